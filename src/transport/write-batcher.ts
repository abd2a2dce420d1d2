import type { Writable } from 'node:stream';

const MAX_CORKED_SOCKETS = 32;
const FULL_WRITE_BYTES = 16384;

/**
 * Corks a socket on its first write and uncorks it at the end of the event-loop turn, so that what
 * many sockets' input sends to one socket in a turn (fan-in: every publisher's messages to one
 * subscriber) leaves in one write instead of one syscall per input chunk. Output does not wait that
 * long once it is large (a socket holding 16 KB leaves at once) or spread over many sockets (at 32
 * corked sockets everything leaves after the chunk of input), so a busy turn neither holds
 * thousands of buffers alive nor keeps every reply back until it ends.
 */
export class WriteBatcher {
  private corked: Writable[] = [];
  private scheduled = false;
  private readonly flushAll = (): void => {
    this.scheduled = false;
    this.flush();
  };

  /** Sends what every corked socket holds. */
  private flush(): void {
    const list = this.corked;
    if (list.length === 0) return;
    this.corked = [];
    for (let i = 0; i < list.length; i++) (list[i] as Writable).uncork();
  }

  /**
   * Called after each chunk of input has been handled. A socket written at once for holding 16 KB
   * and corked again later in the turn counts twice: a turn that full has little left to gain.
   */
  chunkDone(): void {
    if (this.corked.length >= MAX_CORKED_SOCKETS) this.flush();
  }

  /** Writes through the cork: what reaches a full write's worth (16 KB) goes at once. */
  write(socket: Writable, bytes: Buffer): void {
    if (socket.writableCorked === 0) this.cork(socket);
    socket.write(bytes);
    if (socket.writableLength >= FULL_WRITE_BYTES) socket.uncork();
  }

  private cork(socket: Writable): void {
    socket.cork();
    this.corked.push(socket);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushAll);
    }
  }
}
