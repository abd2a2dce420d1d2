import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';

export type DecodedPacket = mqttPacket.Packet;

/**
 * A bare TCP client for what a client library will not send: exact bytes out, and the server's
 * replies decoded by an independent parser (mqtt-packet).
 */
export class RawClient {
  readonly socket: Socket;
  readonly received: DecodedPacket[] = [];
  closed = false;
  private readonly waiters: Array<() => void> = [];
  private parser: ReturnType<typeof mqttPacket.parser>;

  private constructor(socket: Socket, protocolVersion: number) {
    this.socket = socket;
    this.parser = mqttPacket.parser({ protocolVersion });
    this.parser.on('packet', (p: DecodedPacket) => {
      this.received.push(p);
      this.wake();
    });
    this.parser.on('error', () => undefined);
    socket.on('data', (chunk) => this.parser.parse(chunk));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** A loopback TCP port, or the path of a Unix domain socket. */
  static open(port: number | string, protocolVersion = 4): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const where = typeof port === 'string' ? { path: port } : { port, host: '127.0.0.1' };
      const socket = connect(where, () => resolve(new RawClient(socket, protocolVersion)));
      socket.once('error', reject);
    });
  }

  /** Bytes as a Buffer, or a hex string with optional spaces. */
  send(bytes: Buffer | string): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes.replace(/\s+/g, ''), 'hex') : bytes);
  }

  /** Encodes a packet with mqtt-packet and sends it. */
  sendPacket(packet: Record<string, unknown>, protocolVersion = 4): void {
    this.send(mqttPacket.generate(packet as unknown as mqttPacket.Packet, { protocolVersion }));
  }

  /** Waits for the next packet not yet consumed (or rejects on close/timeout). */
  async next(timeoutMs = 3000): Promise<DecodedPacket> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length === 0) {
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a packet');
      await this.wait(left);
    }
    return this.received.shift() as DecodedPacket;
  }

  /** Resolves true when the server closes the connection within the timeout. */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.wait(left);
    }
    return true;
  }

  close(): void {
    this.socket.destroy();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  private wake(): void {
    const ws = this.waiters.splice(0);
    for (const w of ws) w();
  }
}
