import { Buffer } from 'node:buffer';
import { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

/** How long a client has to answer the close frame before its socket is cut. */
const CLOSE_REPLY_MS = 1000;

/**
 * A WebSocket as a byte stream for the MQTT connection. MQTT packets may span or share frames
 * ([MQTT-6.0.0-2]); a batch of writes leaves as one binary frame. A text frame closes the
 * connection ([MQTT-6.0.0-1]).
 */
export class WebSocketDuplex extends Duplex {
  private readonly ws: WebSocket;

  constructor(ws: WebSocket) {
    super({ allowHalfOpen: false });
    this.ws = ws;
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
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
    this.ws.close(1000);
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.terminate();
    // closing: ws would wait 30 s for the client's answer to its close frame, holding the socket
    else if (this.ws.readyState === this.ws.CLOSING) setTimeout(() => this.ws.terminate(), CLOSE_REPLY_MS).unref();
    callback(err);
  }
}
