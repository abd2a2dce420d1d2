import type { Writable } from 'node:stream';

/**
 * Corks a socket on its first write and uncorks every corked socket once the chunk of input that
 * caused the writes has been handled (or at the end of the event-loop turn): replies and fan-out
 * deliveries produced while handling a chunk leave in one writev per socket instead of one
 * syscall per packet.
 */
export class WriteBatcher {
  private corked: Writable[] = [];
  private scheduled = false;
  private readonly flushAll = (): void => {
    this.scheduled = false;
    this.flush();
  };

  /**
   * Sends what every corked socket but `keep` holds now. The connection calls this after each
   * chunk of input, so a delivery never waits behind other sockets' input in the same turn (which
   * would add their processing time to its latency). The input's own socket (its PUBACKs) stays
   * corked to the end of the turn: acknowledgements are not what a subscriber waits for, and
   * sending them later spares a syscall on the way to the deliveries. The end-of-turn flush also
   * covers writes made outside input handling (timers, hook answers, drained queues).
   */
  flush(keep?: Writable): void {
    const list = this.corked;
    if (list.length === 0) return;
    this.corked = [];
    for (let i = 0; i < list.length; i++) {
      const socket = list[i] as Writable;
      if (socket === keep) this.corked.push(socket);
      else socket.uncork();
    }
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
