import { Buffer } from 'node:buffer';
import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { lstat, unlink } from 'node:fs/promises';
import { createConnection, createServer as createNetServer, Socket, type AddressInfo, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, TLSSocket, type Server as TlsServer } from 'node:tls';
import { onSocketData, type PeerInfo } from './connection.js';
import { ConnectionPool, tcpPeerAddress, type PoolOptions } from './connection-pool.js';
import { directReads } from './direct-read.js';
import { parseProxyHeader } from './proxy-protocol.js';
import type { TlsFiles } from './tls-material.js';
import { createWsServer } from './ws-server.js';
import { WebSocketDuplex } from './ws-stream.js';

export type ListenerProtocol = 'mqtt' | 'mqtts' | 'ws' | 'wss';

export interface ListenerOptions extends PoolOptions {
  protocol: ListenerProtocol;
  host: string;
  port: number;
  /** a Unix domain socket's path, in place of host and port */
  socket?: string | undefined;
  /** expect a PROXY protocol v1/v2 header before anything else (mqtt and mqtts) */
  proxyProtocol: boolean;
  /** for mqtts and wss */
  tls?: TlsFiles;
  /** for ws and wss */
  wsPath: string;
  onError(err: Error, where: string): void;
  /** a TLS handshake that led to no connection (a client certificate refused, a timeout): for the log */
  onTlsClientError(err: Error, remoteAddress: string): void;
}

/** Per-socket write buffer before a subscriber counts as congested (QoS 0 then waits in its queue). */
const WRITE_HIGH_WATER = 64 * 1024;
const readDirectly = directReads(onSocketData);

/**
 * One listening endpoint: MQTT over TCP, TLS, WebSocket or secure WebSocket, on a port or a Unix
 * domain socket. Owns the accepted connections and their keep-alive timers; what happens on them
 * is the protocol channel's business.
 */
export class Listener extends ConnectionPool {
  declare readonly options: ListenerOptions;
  private readonly server: Server | HttpServer | HttpsServer;
  /** mqtts behind PROXY headers: the TLS server, never listening, that the sockets go to once their header is read */
  private proxiedTls: TlsServer | undefined;
  /** the client address each PROXY header named, by the TCP socket it came on */
  private readonly proxied = new WeakMap<Duplex, string | undefined>();
  private serverClosed: Promise<void> | undefined;
  /** every accepted socket, including those still in a TLS handshake or PROXY header, so close() never waits on them */
  private readonly sockets = new Set<Socket>();

  constructor(options: ListenerOptions) {
    super(options);
    const tls = options.tls;
    if ((options.protocol === 'mqtts' || options.protocol === 'wss') && tls === undefined) {
      throw new Error(`a ${options.protocol} listener needs a certificate and a key`);
    }
    const tlsOptions = tls === undefined ? undefined : {
      ...tls.serverOptions(),
      handshakeTimeout: options.connectTimeoutMs,
      highWaterMark: WRITE_HIGH_WATER,
    };
    switch (options.protocol) {
      case 'mqtt':
        // paused so that no read happens before the socket is set up for direct reads
        this.server = createNetServer(
          { noDelay: true, highWaterMark: WRITE_HIGH_WATER, pauseOnConnect: !options.proxyProtocol },
          (s) => this.onSocket(s),
        );
        break;
      case 'mqtts':
        if (options.proxyProtocol) {
          // the PROXY header precedes the TLS handshake: it is read on the raw socket, which then goes
          // to a TLS server of Node's, so that the handshake, its timeout and the check of the client
          // certificate are Node's own (a TLSSocket made by hand checks no certificate)
          this.proxiedTls = this.tlsServer(tlsOptions as object);
          this.server = createNetServer({ noDelay: true, highWaterMark: WRITE_HIGH_WATER }, (s) => this.onSocket(s));
        } else {
          this.server = this.tlsServer(tlsOptions as object);
        }
        break;
      case 'ws':
      case 'wss': {
        const http = createWsServer({
          tls: tlsOptions,
          path: options.wsPath,
          maxPacketSize: options.maxPacketSize,
          connectTimeoutMs: options.connectTimeoutMs,
          onConnection: (ws, req) => this.accept(new WebSocketDuplex(ws), this.peerOf(req.socket, undefined)),
        });
        if (options.protocol === 'wss') http.on('tlsClientError', (err: Error, socket: Duplex) => this.handshakeFailed(err, socket));
        this.server = http;
        break;
      }
    }
    // a plain socket is a Connection from its first moment, and drain() closes those: tracking it
    // again would cost every idle connection a listener and a set entry
    if (options.protocol !== 'mqtt' || options.proxyProtocol === true) this.server.on('connection', (socket: Socket) => this.track(socket));
  }

  private track(socket: Socket): void {
    // read now: a TLS socket refused for its certificate is closed, and has lost its address, when Node reports it
    if (this.options.tls !== undefined) void socket.remoteAddress;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  get protocol(): ListenerProtocol {
    return this.options.protocol;
  }

  /** Resolves with the TCP address bound, or the socket's path. */
  async listen(): Promise<AddressInfo | string> {
    const socket = this.options.socket;
    if (socket !== undefined) await removeStaleSocket(socket);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      const ready = (): void => {
        this.server.off('error', onError);
        // errors before this point reject listen(); later ones are logged
        this.server.on('error', (err) => this.options.onError(err, 'listener'));
        this.startTicking();
        resolve();
      };
      if (socket !== undefined) this.server.listen(socket, ready);
      else this.server.listen(this.options.port, this.options.host, ready);
    });
    return this.server.address() as AddressInfo | string;
  }

  /** New certificate and key (SIGHUP or changed files): new handshakes use them, live ones go on. */
  reloadTls(tls: TlsFiles): void {
    (this.proxiedTls ?? (this.server as TlsServer)).setSecureContext(tls.serverOptions());
  }

  /** Stops accepting new connections; live ones go on until drain(). */
  stopAccepting(): void {
    if (this.serverClosed !== undefined) return;
    // close() calls back only once every connection has ended, so drain() awaits it, not this
    this.serverClosed = this.server.listening
      ? new Promise<void>((resolve) => this.server.close(() => resolve()))
      : Promise.resolve();
    // HTTP keeps idle sockets open; they are not MQTT connections
    if ('closeIdleConnections' in this.server) this.server.closeIdleConnections();
  }

  /** Waits until every connection has closed, destroying stragglers after `timeoutMs`. */
  override async drain(timeoutMs: number): Promise<void> {
    await super.drain(timeoutMs);
    for (const s of this.sockets) s.destroy();
    await this.serverClosed;
  }

  private onSocket(socket: Socket): void {
    if (!this.options.proxyProtocol) {
      readDirectly(socket);
      socket.setNoDelay(true);
      this.accept(socket, this.peerOf(socket, undefined));
      return;
    }
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const timer = setTimeout(() => socket.destroy(), this.options.connectTimeoutMs);
    timer.unref();
    let buffered: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      let header;
      try {
        header = parseProxyHeader(buffered);
      } catch {
        clearTimeout(timer);
        socket.destroy();
        return;
      }
      if (header === 'incomplete') return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      const rest = buffered.subarray(header.consumed);
      if (rest.length > 0) socket.unshift(rest);
      if (this.proxiedTls !== undefined) {
        this.proxied.set(socket, header.address);
        this.proxiedTls.emit('connection', socket);
      } else {
        this.accept(socket, this.peerOf(socket, header.address));
        socket.resume();
      }
    };
    socket.on('data', onData);
  }

  /** A TLS server's, whose connections this listener takes once their handshake is done. */
  private tlsServer(options: object): TlsServer {
    const server = createTlsServer(options, (s) => this.accept(s, this.peerOf(s, this.proxiedAddress(s))));
    server.on('tlsClientError', (err, socket) => this.handshakeFailed(err, socket));
    return server;
  }

  /** The address the PROXY header of a TLS socket's connection named. */
  private proxiedAddress(socket: Duplex): string | undefined {
    const raw = tcpSocketUnder(socket);
    return raw === undefined ? undefined : this.proxied.get(raw);
  }

  /** A TLS handshake that led to no connection: closed, and reported unless the peer just went away. */
  private handshakeFailed(err: Error, socket: Duplex): void {
    const raw = tcpSocketUnder(socket);
    const address = this.proxiedAddress(socket) ?? tcpPeerAddress(socket) ?? (raw === undefined ? undefined : tcpPeerAddress(raw)) ?? 'unknown';
    // Node reports a handshake timeout but leaves the socket open
    socket.destroy();
    // a client certificate is checked once the handshake is over, and the socket then closed, which
    // Node reports as the peer hanging up: the verification error says what happened
    const unverified: unknown = (socket as TLSSocket).authorizationError;
    if (unverified !== null && unverified !== undefined) {
      const code = String(unverified);
      err = Object.assign(new Error(`client certificate not accepted: ${code}`), { code });
    } else {
      const code = (err as NodeJS.ErrnoException).code;
      // a TCP health check or a port scan that hung up: nothing was refused
      if (code === 'ECONNRESET' || code === 'EPIPE') return;
    }
    this.options.onTlsClientError(err, address);
  }

  private peerOf(socket: Socket, proxied: string | undefined): PeerInfo {
    const local = this.options.socket;
    const remoteAddress = proxied ?? (local !== undefined ? `unix:${local}` : (tcpPeerAddress(socket) ?? 'unknown'));
    const tls = this.options.tls;
    if (tls?.certificateAsUsername === true && socket instanceof TLSSocket && socket.authorized) {
      const cn = socket.getPeerCertificate().subject?.CN;
      if (typeof cn === 'string' && cn.length > 0) return { remoteAddress, certificateUsername: cn };
    }
    return { remoteAddress };
  }
}

/** The TCP socket a TLS socket of a Node TLS server wraps: Node keeps it as _parent (since 0.11, not documented). */
function tcpSocketUnder(socket: Duplex): Socket | undefined {
  const raw = (socket as { _parent?: unknown })._parent;
  return raw instanceof Socket ? raw : undefined;
}

/**
 * A socket file left by a broker that did not close (a crash, a kill) would refuse the bind: one
 * nothing answers on is removed. One a live server answers on stays, and the bind reports it.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const answered = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (answered) return;
  try {
    if ((await lstat(path)).isSocket()) await unlink(path);
  } catch {
    // no file there: nothing to remove
  }
}
