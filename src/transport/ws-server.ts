import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { WebSocketServer, type WebSocket } from 'ws';

/** RFC: an MQTT over WebSocket client offers "mqtt" (3.1.1, 5.0) or "mqttv3.1" (3.1). */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'];

/**
 * How many of the largest MQTT packets one WebSocket message may hold. ws hands a message over
 * only once all of it has come, so its bound is what one connection can make the broker hold
 * before any of it is read. Packets may share a message ([MQTT-6.0.0-2]): MQTT.js in a browser
 * sends every write queued while its socket was busy as one, so a bound of one packet refused
 * valid input, which Mosquitto, reading frames as they come, takes. Four keeps what a connection
 * holds within a few packets, as a TCP connection's parser holds up to one; a message past it is
 * closed with 1009 as the frame header that crosses it is read, before its bytes are kept.
 */
export const WS_MESSAGE_PACKETS = 4;

/** The largest WebSocket message taken. ws reads it as a 32-bit integer: 4 x 268435455 (the largest maxPacketSize) fits. */
export function wsMessageLimit(maxPacketSize: number): number {
  return Math.min(WS_MESSAGE_PACKETS * maxPacketSize, 2 ** 31 - 1);
}

export interface WsServerOptions {
  /** undefined for ws; for wss, the TLS server's options */
  tls: object | undefined;
  path: string;
  /** the maximum packet size in force, read at each upgrade: a reload changes it for later connections */
  maxPacketSize(): number;
  onConnection(ws: WebSocket, req: IncomingMessage): void;
}

/** The HTTP (ws) or HTTPS (wss) server that upgrades requests on the MQTT path to MQTT over WebSocket. */
export function createWsServer(options: WsServerOptions): HttpServer | HttpsServer {
  const http = options.tls === undefined ? createHttpServer() : createHttpsServer(options.tls);
  const wss = new WebSocketServer({
    server: http,
    path: options.path,
    maxPayload: wsMessageLimit(options.maxPacketSize()),
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
    // [MQTT-6.0.0-4] a client that names subprotocols must name MQTT's; one that names none
    // is taken, as browsers' and other brokers' clients may
    verifyClient: (info: { req: IncomingMessage }, done: (ok: boolean, code?: number, message?: string) => void) => {
      const header = info.req.headers['sec-websocket-protocol'];
      if (header === undefined || header.split(',').some((p) => SUBPROTOCOLS.includes(p.trim()))) done(true);
      else done(false, 400, 'MQTT over WebSocket needs the subprotocol mqtt');
    },
  });
  // ws reads maxPayload as it takes each upgrade: set ahead of it, the bound is the one of the limit
  // in force, as the connection's parser's maximum packet size is (SIGHUP may have changed both)
  http.prependListener('upgrade', () => {
    wss.options.maxPayload = wsMessageLimit(options.maxPacketSize());
  });
  wss.on('connection', (ws, req: IncomingMessage) => options.onConnection(ws, req));
  // ws re-emits every error of the HTTP server it is attached to and has none of its own: the
  // listener reports those already (listen() rejects with a bind error). An 'error' with no
  // handler would throw
  wss.on('error', () => undefined);
  // a plain HTTP request on the MQTT path gets a clear answer instead of a hang
  http.on('request', (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket', connection: 'Upgrade' }).end('this endpoint speaks MQTT over WebSocket\n');
  });
  return http;
}
