import type { Socket } from 'node:net';

interface Pending {
  readonly acceptedAt: number;
  readonly timer: NodeJS.Timeout;
}

/**
 * limits.connectTimeoutMs counts from the accept to the CONNECT, over every step between: a PROXY
 * header, the TLS handshake, the HTTP upgrade. A timeout of each step's own gave a slow client the
 * whole time again at each (three times over on wss). A socket is timed here until a Connection
 * takes it, whose connect deadline then counts from the same accept.
 */
export class AcceptDeadlines {
  private readonly pending = new WeakMap<Socket, Pending>();
  private readonly expired = new WeakSet<Socket>();

  /** Times a socket just accepted: it is destroyed `timeoutMs` from now unless handed over first. */
  start(socket: Socket, timeoutMs: number): void {
    const timer = setTimeout(() => {
      this.expired.add(socket);
      socket.destroy();
    }, timeoutMs);
    timer.unref();
    this.pending.set(socket, { acceptedAt: Date.now(), timer });
  }

  /** A socket closed before its Connection: its timer goes, not to hold the socket until it fires. */
  forget(socket: Socket): void {
    const p = this.pending.get(socket);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(socket);
  }

  /** Stops timing a socket a Connection now serves; returns when it was accepted (now, for one never timed). */
  handOver(socket: Socket | undefined): number {
    const p = socket === undefined ? undefined : this.pending.get(socket);
    if (p === undefined) return Date.now();
    this.forget(socket as Socket);
    return p.acceptedAt;
  }

  /** Whether the socket was destroyed for reaching its deadline. */
  timedOut(socket: Socket): boolean {
    return this.expired.has(socket);
  }
}
