import type { Duplex } from 'node:stream';
import type { Packet } from '../codec/packets.js';
import { PacketParser, type PacketSink } from '../codec/parser.js';
import { ProtocolError } from '../codec/protocol-error.js';
import { RC } from '../codec/reason-codes.js';
import type { ConnectionPort } from '../protocol/ports.js';
import type { WheelEntry } from './timer-wheel.js';
import type { WriteBatcher } from './write-batcher.js';
import { wsMessageLimit } from './ws-server.js';
import { MESSAGE_TOO_LARGE, WebSocketDuplex } from './ws-stream.js';

/** What a connection drives: the protocol channel (kept as an interface so transport stays apart). */
export interface PacketHandler {
  handleIn(packet: Packet): void;
  handleProtocolError(err: ProtocolError): void;
  handleTimeout(): void;
  handleClosed(): void;
  handleDrain(): void;
  /** the client left this many bytes of output unread: its input is not read until it drains */
  handleStalled(unreadBytes: number): void;
  /** the handling of the connection's input threw: a fault of the broker's, not of the client's bytes */
  handleInternalError(err: unknown): void;
}

/** Who is on the other end, as the transport knows it. */
export interface PeerInfo {
  /** address:port (the real client's when a PROXY protocol header said so) */
  readonly remoteAddress: string;
  /**
   * subject CN of a verified TLS client certificate, when the listener maps it to the username;
   * '' for such a certificate without a CN (the CONNECT is refused)
   */
  readonly certificateUsername?: string;
}

/** Byte and packet counters shared by every connection of a broker. */
export interface TransportStats {
  bytesReceived: number;
  bytesSent: number;
  /** MQTT packets of every kind, as Mosquitto's $SYS/broker/messages/* count them */
  packetsReceived: number;
  packetsSent: number;
}

export interface ConnectionHost {
  readonly batcher: WriteBatcher;
  readonly stats: TransportStats;
  /**
   * The time (ms) to count a keep-alive deadline from: the clock read at the host's last tick,
   * plus one tick, so that a deadline set from it is never early and at most a tick late. Reading
   * the clock itself for every read of every connection cost about 60 ns a read here.
   */
  readonly lateNow: number;
  /** start watching the connection's deadline */
  watch(conn: Connection): void;
  /** an error of the broker's own, for the log (the connection is closed by its handler) */
  internalError(conn: Connection, err: unknown): void;
  unwatch(conn: Connection): void;
  closed(conn: Connection): void;
}

/**
 * Output a client may leave unread before the broker stops reading its input. Replies (PUBACK,
 * PINGRESP...) are written for what it sends whether or not it reads them: a client that sent
 * PINGREQs or QoS 1 publishes and never read had the broker buffer gigabytes of answers (2.4 GB
 * in 20 s) while it served nothing else. As Mosquitto does, its input then waits in the kernel
 * until it has read what it was sent. Its keep alive is put off meanwhile while it reads some of
 * that output (see expire): a PINGREQ it sends is not read either.
 */
export const STALLED_OUTPUT_BYTES = 1024 * 1024;

/**
 * Input of one connection handled before the other connections' is read. libuv reads a socket
 * again at once, up to 32 times, while each read fills the 64 KB buffer: a client publishing
 * 100,000 small retained messages as fast as it could had up to 2 MB of them handled in one turn
 * of the event loop, and every other client waited 300-800 ms for it. Past this share the rest of
 * the read waits, and the socket is not read, until the next turn. 16 KB of the smallest publishes
 * is some 1,000 packets, a few milliseconds; the pause and resume it costs a flood (two syscalls
 * and an immediate per 16 KB) did not show in the broker's CPU per message.
 */
export const INPUT_TURN_BYTES = 16 * 1024;

// The socket listeners are shared by every connection and find theirs through the socket: four
// closures per connection would cost more memory than the rest of an idle connection's state.
const OWNER = Symbol('midge.connection');
type OwnedSocket = Duplex & { [OWNER]: Connection };

/** Whether a connection already serves this stream. */
export function isServed(stream: Duplex): boolean {
  return (stream as Partial<OwnedSocket>)[OWNER] !== undefined;
}

/** Hands a chunk read from a connection's socket to the connection (also the direct reader of plain TCP). */
export function onSocketData(this: Duplex, chunk: Buffer): void {
  (this as OwnedSocket)[OWNER].onData(chunk);
}

function onSocketDrain(this: Duplex): void {
  (this as OwnedSocket)[OWNER].onDrain();
}

function onSocketError(this: Duplex): void {
  // the reason is not the peer's business. 'close' follows most errors, but not all: a TLS socket
  // reports a renegotiation flood as an error and stays open unless destroyed
  this.destroy();
}

function onSocketClose(this: Duplex): void {
  (this as OwnedSocket)[OWNER].onClose();
}

function onMessageTooLarge(this: Duplex): void {
  (this as OwnedSocket)[OWNER].messageTooLarge();
}

function endTurn(conn: Connection): void {
  conn.endTurn();
}

/**
 * Joins a socket, the incremental parser and a protocol channel: every complete packet of a chunk
 * is handled in turn; what they write is held and leaves through the write batcher.
 */
export class Connection implements ConnectionPort, WheelEntry, PacketSink {
  readonly socket: Duplex;
  readonly remoteAddress: string;
  readonly certificateUsername: string | undefined;
  allowAnonymous: boolean | undefined = undefined;
  /** set by the listener when this connection is over a limit: the CONNECT is answered with this code */
  refusal: { reasonCode: number; reason: string } | undefined;
  readonly parser: PacketParser;
  handler: PacketHandler | undefined;
  /** keep-alive or connect deadline, read by the timer wheel */
  deadline: number;
  private keepAliveMs = 0;
  private readonly host: ConnectionHost;
  private closing = false;
  /** reading paused by the handler (a hook answering, a publish rate) */
  private readingPaused = false;
  /** reading paused until the client reads its output (see STALLED_OUTPUT_BYTES) */
  private stalled = false;
  /** reading paused until the next turn (see INPUT_TURN_BYTES) */
  private yielded = false;
  /** input handled since the connection last let the others' be read */
  private inputThisTurn = 0;
  /** a read is being handled (see onData) */
  private feeding = false;
  /** input read but not handled yet, in order: past this turn's share, or read while another was handled */
  private unhandled: Buffer[] | undefined;
  /** output unread when the stall began or its keep alive was last put off (see expire) */
  private unreadAtCheck = 0;

  /** `connectDeadline`: the time (ms) by which the CONNECT must have come */
  constructor(socket: Duplex, peer: PeerInfo, host: ConnectionHost, maxPacketSize: number, connectDeadline: number) {
    this.socket = socket;
    this.host = host;
    this.remoteAddress = peer.remoteAddress;
    this.certificateUsername = peer.certificateUsername;
    this.refusal = undefined;
    this.parser = new PacketParser({ maxPacketSize });
    this.deadline = connectDeadline;
    (socket as OwnedSocket)[OWNER] = this;
    socket.on('data', onSocketData);
    socket.on('drain', onSocketDrain);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    if (socket instanceof WebSocketDuplex) socket.on(MESSAGE_TOO_LARGE, onMessageTooLarge);
    host.watch(this);
  }

  /** @internal called from the shared socket listeners */
  onData(chunk: Buffer): void {
    if (this.handler === undefined || this.closing) return;
    if (this.feeding || this.yielded || this.unhandled !== undefined) {
      // a read that came inside the handling of another (a stream whose peer, in this process,
      // answers a write at once: the parser is in the middle of the other read), or while input
      // read before it waits for the next turn: it waits behind that input, in order
      (this.unhandled ??= []).push(chunk);
      return;
    }
    this.feed(chunk);
  }

  /** Handles the chunk, then what waits behind it, until this turn's share of input is used. */
  private feed(chunk: Buffer): void {
    const handler = this.handler as PacketHandler;
    this.feeding = true;
    try {
      this.take(handler, chunk);
      while (this.unhandled !== undefined && !this.yielded && !this.closing) {
        const next = this.unhandled.shift() as Buffer;
        if (this.unhandled.length === 0) this.unhandled = undefined;
        this.take(handler, next);
      }
    } finally {
      this.feeding = false;
      if (this.closing) this.unhandled = undefined;
    }
    // what this chunk's replies add is still in the batcher: it counts at the next chunk
    // only with a 'drain' to come: a stream whose buffer holds more than that takes it without one
    if (!this.stalled && !this.closing && this.socket.writableLength >= STALLED_OUTPUT_BYTES && this.socket.writableNeedDrain) this.stall();
  }

  /** Handles what of the chunk fits in this turn's share; the rest waits for the next turn. */
  private take(handler: PacketHandler, chunk: Buffer): void {
    const room = INPUT_TURN_BYTES - this.inputThisTurn;
    if (chunk.length < room) {
      this.inputThisTurn += chunk.length;
      this.handleChunk(handler, chunk);
      return;
    }
    this.handleChunk(handler, chunk.length === room ? chunk : chunk.subarray(0, room));
    if (chunk.length > room && !this.closing) (this.unhandled ??= []).unshift(chunk.subarray(room));
    if (!this.closing) this.yieldTurn();
  }

  private yieldTurn(): void {
    this.yielded = true;
    this.socket.pause();
    setImmediate(endTurn, this);
  }

  /** @internal the turn the connection gave up its reading for is over */
  endTurn(): void {
    this.yielded = false;
    this.inputThisTurn = 0;
    this.readOn();
  }

  /** Goes on with the client's input, unless something still holds it back: what waits first, then the socket. */
  private readOn(): void {
    if (this.readingPaused || this.stalled || this.yielded || this.closing) return;
    const waiting = this.unhandled;
    if (waiting !== undefined && !this.feeding) {
      const next = waiting.shift() as Buffer;
      if (waiting.length === 0) this.unhandled = undefined;
      this.feed(next);
      if (this.readingPaused || this.stalled || this.yielded || this.closing) return;
    }
    this.socket.resume();
  }

  private handleChunk(handler: PacketHandler, chunk: Buffer): void {
    this.host.stats.bytesReceived += chunk.length;
    this.host.batcher.chunkStart(this.socket);
    try {
      this.parser.feed(chunk, this);
      const err = this.parser.error;
      if (err !== undefined && !this.closing) handler.handleProtocolError(err);
    } catch (err) {
      // a bug met by one client's input ends that client's connection, not the broker's process
      handler.handleInternalError(err);
    } finally {
      this.host.batcher.chunkDone();
    }
  }

  /**
   * @internal a WebSocket message over the listener's bound: refused as a packet over the maximum
   * packet size is (a 5.0 client let in is sent DISCONNECT 0x95), before the socket closes with 1009
   */
  messageTooLarge(): void {
    const handler = this.handler;
    if (handler === undefined || this.closing) return;
    const limit = wsMessageLimit(this.parser.maxPacketSize);
    try {
      handler.handleProtocolError(new ProtocolError(RC.PacketTooLarge, `WebSocket message over ${limit} bytes, four maximum packets`));
    } catch (err) {
      handler.handleInternalError(err);
    }
  }

  private stall(): void {
    this.stalled = true;
    this.unreadAtCheck = this.socket.writableLength;
    this.socket.pause();
    try {
      this.handler?.handleStalled(this.socket.writableLength);
    } catch (err) {
      this.host.internalError(this, err);
    }
  }

  /** @internal each packet of a read, as the parser decodes it; true stops the read */
  packet(packet: Packet): boolean {
    this.host.stats.packetsReceived++;
    if (this.keepAliveMs > 0) this.deadline = this.host.lateNow + this.keepAliveMs;
    (this.handler as PacketHandler).handleIn(packet);
    return this.closing;
  }

  /** @internal */
  onDrain(): void {
    if (this.stalled) {
      this.stalled = false;
      if (this.keepAliveMs > 0) this.deadline = this.host.lateNow + this.keepAliveMs;
      this.readOn();
    }
    this.guarded('handleDrain');
  }

  /** @internal */
  onClose(): void {
    this.closing = true;
    this.host.unwatch(this);
    this.host.closed(this);
    try {
      this.handler?.handleClosed();
    } catch (err) {
      // the connection is gone already: the fault is logged, and the broker goes on
      this.host.internalError(this, err);
    }
  }

  /** Called by the timer wheel when the deadline passed. */
  expire(): void {
    if (this.stalled && this.keepAliveMs > 0 && this.socket.writableLength < this.unreadAtCheck) {
      // its PINGREQs wait unread behind the output it does not read: a client on a slow link taking
      // a large backlog, reading some of it since the last look, is not dropped for that; one that
      // read nothing over a whole keep alive is [MQTT-3.1.2-24]
      this.unreadAtCheck = this.socket.writableLength;
      this.deadline = this.host.lateNow + this.keepAliveMs;
      this.host.watch(this);
      return;
    }
    this.guarded('handleTimeout');
  }

  /** A socket or timer event for the handler; a fault in it closes this connection, not the process. */
  private guarded(event: 'handleDrain' | 'handleTimeout'): void {
    const handler = this.handler;
    if (handler === undefined) return;
    try {
      handler[event]();
    } catch (err) {
      handler.handleInternalError(err);
    }
  }

  // ---- ConnectionPort -------------------------------------------------------------------------

  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  reportError(err: unknown): void {
    this.host.internalError(this, err);
  }

  write(bytes: Buffer): void {
    if (this.closing) return;
    this.host.stats.packetsSent++;
    this.host.stats.bytesSent += bytes.length;
    this.host.batcher.write(this.socket, bytes);
  }

  writeFrame(head: Buffer, payload: Buffer): void {
    if (this.closing) return;
    this.host.stats.packetsSent++;
    this.host.stats.bytesSent += head.length + payload.length;
    this.host.batcher.write(this.socket, head);
    if (payload.length > 0) this.host.batcher.write(this.socket, payload);
  }

  setKeepAlive(seconds: number): void {
    // [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0): one and a half times the keep alive
    this.keepAliveMs = seconds * 1500;
    if (seconds === 0) {
      this.host.unwatch(this);
      return;
    }
    this.deadline = Date.now() + this.keepAliveMs;
    // the wheel only re-files deadlines that moved later; this one may be sooner than the connect timeout
    this.host.watch(this);
  }

  pauseReading(): void {
    this.readingPaused = true;
    this.socket.pause();
  }

  resumeReading(): void {
    this.readingPaused = false;
    this.readOn();
  }

  close(reasonCode?: number): void {
    if (this.closing) return;
    this.closing = true;
    this.host.unwatch(this);
    const socket = this.socket;
    if (socket instanceof WebSocketDuplex) socket.closeFor(reasonCode);
    // Let what was written (CONNACK or DISCONNECT with its reason) reach the peer, then go.
    this.host.batcher.release(socket);
    socket.once('finish', () => socket.destroy());
    socket.end();
    setTimeout(() => socket.destroy(), 2000).unref();
  }
}
