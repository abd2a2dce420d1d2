import { Buffer } from 'node:buffer';
import type { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { RC } from '../codec/reason-codes.js';

/** How long a client has to answer the close frame before its socket is cut. */
const CLOSE_REPLY_MS = 1000;

/**
 * The event a WebSocketDuplex emits when the client sends a message over the listener's bound, while
 * the connection can still be written to: what is written then goes before the close frame.
 */
export const MESSAGE_TOO_LARGE = 'messageTooLarge';

/**
 * The close code (RFC 6455 7.4.1) for the MQTT reason a connection is closed with, so that a
 * WebSocket client that cannot read a DISCONNECT (3.1.1, or before CONNACK) still learns whether
 * it was its fault. Undefined: no reason given, a normal close.
 */
export function wsCloseCode(reasonCode: number | undefined): number {
  if (reasonCode === undefined || reasonCode < 0x80 || reasonCode === RC.SessionTakenOver) return 1000;
  switch (reasonCode) {
    case RC.ServerShuttingDown:
      return 1001;
    case RC.MalformedPacket:
    case RC.ProtocolError:
    case RC.UnsupportedProtocolVersion:
    case RC.ReceiveMaximumExceeded:
    case RC.TopicAliasInvalid:
      return 1002;
    case RC.PacketTooLarge:
      return 1009;
    // the broker's own fault (a failed store, a bug): 1011 in IANA's registry of close codes
    case RC.UnspecifiedError:
    case RC.ImplementationSpecificError:
      return 1011;
    default:
      // refusals: authentication, authorization, limits, quotas
      return 1008;
  }
}

/**
 * A WebSocket as a byte stream for the MQTT connection. MQTT packets may span or share frames
 * ([MQTT-6.0.0-2]); a batch of writes leaves as one binary frame. A text frame closes the
 * connection ([MQTT-6.0.0-1]).
 */
export class WebSocketDuplex extends Duplex {
  private readonly ws: WebSocket;
  private closeCode = 1000;

  constructor(ws: WebSocket) {
    super({ allowHalfOpen: false });
    this.ws = ws;
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      // closed by the broker: what the client sent meanwhile is dropped, yet read (no pause),
      // since its answer to the close frame is behind it
      if (this.destroyed) return;
      if (!isBinary) {
        ws.close(1003, 'MQTT needs binary frames');
        this.destroy();
        return;
      }
      const chunk = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (!this.push(chunk)) ws.pause();
    });
    // the end of input, after what was read but not taken yet (a throttled client's last packets,
    // its DISCONNECT): destroying here would drop them. Once it is all read the stream ends and
    // closes by itself (allowHalfOpen false, autoDestroy)
    ws.on('close', () => {
      this.push(null);
    });
    ws.on('error', (err) => this.destroy(err));
    // ws closes with 1009 as soon as it reads the header of a message over its maxPayload, and only
    // then emits 'error': past its close frame no MQTT DISCONNECT may follow. Its receiver, which
    // finds the message too large, reports it first, so a listener put ahead of ws's own still
    // writes before the close frame. `_receiver` is not ws's documented API: without it the close
    // is 1009 alone, as before (ws-message-size.test.ts says so)
    const receiver = (ws as unknown as { _receiver?: EventEmitter | null })._receiver;
    receiver?.prependListener('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' && !this.destroyed) this.emit(MESSAGE_TOO_LARGE);
    });
  }

  /** The MQTT reason of the close to come (before end()): its close frame carries the matching code. */
  closeFor(reasonCode: number | undefined): void {
    this.closeCode = wsCloseCode(reasonCode);
  }

  override _read(): void {
    this.ws.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.ws.send(chunk, { binary: true }, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    const buf = chunks.length === 1 ? (chunks[0] as { chunk: Buffer }).chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this.ws.send(buf, { binary: true }, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.ws.close(this.closeCode);
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.terminate();
    // closing: ws would wait 30 s for the client's answer to its close frame, holding the socket
    else if (this.ws.readyState === this.ws.CLOSING) setTimeout(() => this.ws.terminate(), CLOSE_REPLY_MS).unref();
    callback(err);
  }
}
