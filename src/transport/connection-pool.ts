import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Refusal } from './admission.js';
import { Connection, type ConnectionHost, type PacketHandler, type PeerInfo, type TransportStats } from './connection.js';
import { TimerWheel } from './timer-wheel.js';
import { WriteBatcher } from './write-batcher.js';

export interface PoolOptions {
  maxPacketSize: number;
  connectTimeoutMs: number;
  /** overrides the broker's anonymous policy for this pool's connections */
  allowAnonymous?: boolean | undefined;
  /** 0 = no limit of this pool's own */
  maxConnections: number;
  /** names the pool in the reason a connection over its own limit is refused with */
  name: string;
  stats: TransportStats;
  /** asked for each new connection: a refusal means the CONNECT is answered with that code */
  admit(peer: PeerInfo): Refusal | undefined;
  /** builds the protocol side of a new connection */
  attach(conn: Connection): PacketHandler;
  /** an error of the broker's own met while serving a connection (it is closed): for the log */
  onInternalError(err: unknown, remoteAddress: string): void;
}

export const TICK_MS = 250;

/** "host:port" of a TCP peer; undefined for any other stream, and for a Unix socket's peer, which has no address. */
export function tcpPeerAddress(stream: Duplex): string | undefined {
  return stream instanceof Socket && stream.remoteAddress !== undefined ? `${stream.remoteAddress}:${stream.remotePort ?? ''}` : undefined;
}

/**
 * A set of MQTT connections sharing one write batcher and one keep-alive wheel: a listener's, or
 * the streams an embedding application hands over itself.
 */
export class ConnectionPool implements ConnectionHost {
  readonly batcher = new WriteBatcher();
  readonly connections = new Set<Connection>();
  readonly options: PoolOptions;
  readonly stats: TransportStats;
  lateNow = Date.now() + TICK_MS;
  private readonly wheel = new TimerWheel<Connection>(TICK_MS);
  private ticker: NodeJS.Timeout | undefined;

  constructor(options: PoolOptions) {
    this.options = options;
    this.stats = options.stats;
  }

  /** MQTT connections open in this pool */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Starts the clock that expires keep-alive and connect deadlines. */
  startTicking(): void {
    if (this.ticker !== undefined) return;
    this.ticker = setInterval(() => {
      const now = Date.now();
      this.lateNow = now + TICK_MS;
      this.wheel.advance(now, (c) => c.expire());
    }, TICK_MS);
    this.ticker.unref();
  }

  /** A new Connection for a stream; its CONNECT is due connectTimeoutMs after `acceptedAt` (ms, the time of the socket's accept). */
  accept(stream: Duplex, peer: PeerInfo, acceptedAt = Date.now()): Connection {
    const conn = new Connection(stream, peer, this, this.options.maxPacketSize, acceptedAt + this.options.connectTimeoutMs);
    conn.allowAnonymous = this.options.allowAnonymous;
    this.connections.add(conn);
    const max = this.options.maxConnections;
    conn.refusal =
      max > 0 && this.connections.size > max
        ? { reasonCode: 0x97, reason: `${this.options.name} connection limit (${max}) reached` }
        : this.options.admit(peer);
    conn.handler = this.options.attach(conn);
    return conn;
  }

  /** Waits until every connection has closed, destroying stragglers after `timeoutMs`. */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.connections.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const c of this.connections) c.socket.destroy();
    if (this.ticker !== undefined) clearInterval(this.ticker);
    this.ticker = undefined;
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

  internalError(conn: Connection, err: unknown): void {
    this.options.onInternalError(err, conn.remoteAddress);
  }

}
