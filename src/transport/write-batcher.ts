import type { Writable } from 'node:stream';

/**
 * Corks a socket on its first write in an event-loop turn and uncorks every corked socket once,
 * after the turn's I/O callbacks: replies and fan-out deliveries produced while handling a batch
 * of input leave in one writev per socket instead of one syscall per packet.
 */
export class WriteBatcher {
  private corked: Writable[] = [];
  private scheduled = false;
  private readonly flushAll = (): void => {
    this.scheduled = false;
    const list = this.corked;
    this.corked = [];
    for (let i = 0; i < list.length; i++) (list[i] as Writable).uncork();
  };

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
