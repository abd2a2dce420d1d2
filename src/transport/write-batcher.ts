import type { Writable } from 'node:stream';

/**
 * Corks a socket on its first write and uncorks every corked socket once the chunk of input that
 * caused the writes has been handled (or at the end of the event-loop turn, for writes made
 * outside input handling): replies and fan-out deliveries produced while handling a chunk leave in
 * one writev per socket instead of one syscall per packet.
 */
export class WriteBatcher {
  private corked: Writable[] = [];
  private scheduled = false;
  private readonly flushAll = (): void => {
    this.scheduled = false;
    this.flush();
  };

  /**
   * Sends what every corked socket holds. Called after each chunk of input: holding deliveries to
   * the end of the turn made them wait behind every other socket's input of that turn, which in
   * alternating runs cost p99 latency (QoS 0 at 5,000 msg/s: 1.05 ms against 0.79 ms, medians of
   * 6) and throughput (fan-in QoS 0: 466,000 against 768,000 msg/s delivered).
   */
  flush(): void {
    const list = this.corked;
    if (list.length === 0) return;
    this.corked = [];
    for (let i = 0; i < list.length; i++) (list[i] as Writable).uncork();
  }

  /** Call before writing to `socket`; returns immediately if it is already corked this turn. */
  cork(socket: Writable): void {
    if (socket.writableCorked > 0) return;
    socket.cork();
    this.corked.push(socket);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushAll);
    }
  }
}
