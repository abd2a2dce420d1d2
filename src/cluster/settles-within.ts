/**
 * How `promise` settles within `ms`: 'done' (resolved), 'failed' (rejected) or 'late' (neither
 * yet). The timer is cleared as soon as the promise settles.
 */
export function settlesWithin(promise: Promise<unknown>, ms: number): Promise<'done' | 'failed' | 'late'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('late'), ms);
    promise.then(
      () => {
        clearTimeout(timer);
        resolve('done');
      },
      () => {
        clearTimeout(timer);
        resolve('failed');
      },
    );
  });
}
