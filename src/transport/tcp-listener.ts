import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Connection, type ConnectionHost, type PacketHandler } from './connection.js';
import { TimerWheel } from './timer-wheel.js';
import { WriteBatcher } from './write-batcher.js';

export interface ListenerOptions {
  host: string;
  port: number;
  maxPacketSize: number;
  connectTimeoutMs: number;
  /** builds the protocol side of a new connection */
  attach: (conn: Connection) => PacketHandler;
}

const TICK_MS = 250;
/** Per-socket write buffer before a subscriber counts as congested (QoS 0 then waits in its queue). */
const WRITE_HIGH_WATER = 64 * 1024;

/** A plain-TCP MQTT listener: accepts sockets and owns their timers. */
export class TcpListener implements ConnectionHost {
  readonly batcher = new WriteBatcher();
  readonly connections = new Set<Connection>();
  private readonly wheel = new TimerWheel<Connection>(TICK_MS);
  private readonly server: Server;
  private readonly options: ListenerOptions;
  private ticker: NodeJS.Timeout | undefined;

  constructor(options: ListenerOptions) {
    this.options = options;
    this.server = createServer({ noDelay: true, highWaterMark: WRITE_HIGH_WATER }, (socket) => this.accept(socket));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', onError);
        this.ticker = setInterval(() => this.wheel.advance(Date.now(), (c) => c.expire()), TICK_MS);
        this.ticker.unref();
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting; existing connections are left to the caller. */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
  }

  /** Waits until every connection has closed, destroying stragglers after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.connections.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const c of this.connections) c.socket.destroy();
    if (this.ticker !== undefined) clearInterval(this.ticker);
  }

  private accept(socket: Socket): void {
    const conn = new Connection(socket, this, this.options.maxPacketSize, this.options.connectTimeoutMs);
    this.connections.add(conn);
    conn.handler = this.options.attach(conn);
  }

  watch(conn: Connection): void {
    this.wheel.add(conn);
  }

  unwatch(conn: Connection): void {
    this.wheel.remove(conn);
  }

  closed(conn: Connection): void {
    this.connections.delete(conn);
  }
}
