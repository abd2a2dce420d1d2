/**
 * Watches how long the event loop is held: the longest gap between ticks of a 1 ms interval. A
 * broker in this process holds it for as long as any one piece of its work runs, and no client's
 * traffic moves meanwhile. `stop()` ends the watch and returns the longest gap in ms.
 */
export function watchLoopHold(): { stop(): number } {
  let last = performance.now();
  let longest = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    if (now - last > longest) longest = now - last;
    last = now;
  }, 1);
  return {
    stop(): number {
      clearInterval(ticker);
      return longest;
    },
  };
}
