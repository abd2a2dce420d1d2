import type { Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { lstat, unlink } from 'node:fs/promises';
import { createConnection, createServer as createNetServer, Socket, type AddressInfo, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, TLSSocket, Server as TlsServer } from 'node:tls';
import { AcceptDeadlines } from './accept-deadline.js';
import { onSocketData, type PeerInfo } from './connection.js';
import { ConnectionPool, tcpPeerAddress, type PoolOptions } from './connection-pool.js';
import { directReads } from './direct-read.js';
import { readProxyHeader } from './proxy-reader.js';
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
  /** expect a PROXY protocol v1/v2 header before anything else, the TLS handshake and HTTP upgrade included */
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
  /**
   * Behind PROXY headers, the TLS, HTTP or HTTPS server, never listening, that the sockets go to
   * once their header is read: the handshake, its check of the client certificate and the upgrade
   * are then Node's and ws's own (a TLSSocket made by hand checks no certificate)
   */
  private readonly behindProxy: Server | undefined;
  /** the client address each PROXY header named, by the TCP socket it came on */
  private readonly proxied = new WeakMap<Duplex, string | undefined>();
  private readonly deadlines = new AcceptDeadlines();
  private serverClosed: Promise<void> | undefined;
  /** every accepted socket, including those still in a TLS handshake or PROXY header, so close() never waits on them */
  private readonly sockets = new Set<Socket>();

  constructor(options: ListenerOptions) {
    super(options);
    const tls = options.tls;
    if ((options.protocol === 'mqtts' || options.protocol === 'wss') && tls === undefined) {
      throw new Error(`a ${options.protocol} listener needs a certificate and a key`);
    }
    // no handshakeTimeout: Node's (120 s by default) counts from the TLS socket, and the connect
    // deadline, counted from the accept, ends a handshake first (see AcceptDeadlines)
    const tlsOptions = tls === undefined ? undefined : { ...tls.serverOptions(), highWaterMark: WRITE_HIGH_WATER };
    let served: Server | HttpServer | HttpsServer;
    switch (options.protocol) {
      case 'mqtt':
        // paused so that no read happens before the socket is set up for direct reads
        served = createNetServer(
          { noDelay: true, highWaterMark: WRITE_HIGH_WATER, pauseOnConnect: !options.proxyProtocol },
          (s) => this.onSocket(s),
        );
        break;
      case 'mqtts':
        served = this.tlsServer(tlsOptions as object);
        break;
      case 'ws':
      case 'wss': {
        served = createWsServer({
          tls: tlsOptions,
          path: options.wsPath,
          maxPacketSize: () => this.options.maxPacketSize,
          onConnection: (ws, req) => this.serve(new WebSocketDuplex(ws), req.socket, this.peerOf(req.socket, this.proxiedAddress(req.socket))),
        });
        if (options.protocol === 'wss') served.on('tlsClientError', (err: Error, socket: Duplex) => this.handshakeFailed(err, socket));
        break;
      }
    }
    if (options.proxyProtocol && options.protocol !== 'mqtt') {
      this.behindProxy = served;
      this.server = createNetServer({ noDelay: true, highWaterMark: WRITE_HIGH_WATER }, (s) => this.onSocket(s));
    } else {
      this.server = served;
    }
    // a plain socket is a Connection from its first moment, and drain() closes those: tracking it
    // again would cost every idle connection a listener and a set entry. The others are tracked
    // from the accept, before any listener of Node's or ws's sees them
    if (options.protocol !== 'mqtt' || options.proxyProtocol) this.server.prependListener('connection', (socket: Socket) => this.track(socket));
  }

  private track(socket: Socket): void {
    // read now: a TLS socket refused for its certificate is closed, and has lost its address, when Node reports it
    if (this.options.tls !== undefined) void socket.remoteAddress;
    this.sockets.add(socket);
    this.deadlines.start(socket, this.options.connectTimeoutMs);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.deadlines.forget(socket);
    });
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
    ((this.behindProxy ?? this.server) as TlsServer).setSecureContext(tls.serverOptions());
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
    readProxyHeader(socket, (address) => {
      const next = this.behindProxy;
      if (next === undefined) {
        this.serve(socket, socket, this.peerOf(socket, address));
        socket.resume();
        return;
      }
      this.proxied.set(socket, address);
      next.emit('connection', socket);
      // a TLS socket reads what was put back itself; HTTP reads it as the stream flows again
      if (!(next instanceof TlsServer)) socket.resume();
    });
  }

  /** A new Connection for a stream; its connect deadline counts from the accept of the socket under it. */
  private serve(stream: Duplex, under: Duplex, peer: PeerInfo): void {
    const raw = tcpSocketUnder(under) ?? (under instanceof Socket ? under : undefined);
    this.accept(stream, peer, this.deadlines.handOver(raw));
  }

  /** A TLS server's, whose connections this listener takes once their handshake is done. */
  private tlsServer(options: object): TlsServer {
    const server = createTlsServer(options, (s) => this.serve(s, s, this.peerOf(s, this.proxiedAddress(s))));
    server.on('tlsClientError', (err, socket) => this.handshakeFailed(err, socket));
    return server;
  }

  /** The address the PROXY header of a socket's connection named (for a TLS socket, of the TCP socket under it). */
  private proxiedAddress(socket: Duplex): string | undefined {
    return this.proxied.get(tcpSocketUnder(socket) ?? socket);
  }

  /** A TLS handshake that led to no connection: closed, and reported unless the peer just went away. */
  private handshakeFailed(err: Error, socket: Duplex): void {
    const raw = tcpSocketUnder(socket);
    const address = this.proxiedAddress(socket) ?? tcpPeerAddress(socket) ?? (raw === undefined ? undefined : tcpPeerAddress(raw)) ?? 'unknown';
    // Node reports some errors (its own handshake timeout) but leaves the socket open
    socket.destroy();
    // a client certificate is checked once the handshake is over, and the socket then closed, which
    // Node reports as the peer hanging up: the verification error says what happened
    const unverified: unknown = (socket as TLSSocket).authorizationError;
    if (raw !== undefined && this.deadlines.timedOut(raw)) {
      // cut at the connect deadline, which Node sees as the peer hanging up
      err = Object.assign(new Error('TLS handshake timeout'), { code: 'ERR_TLS_HANDSHAKE_TIMEOUT' });
    } else if (unverified !== null && unverified !== undefined) {
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
      // several CNs come as a list: the first is the name, as Mosquitto takes it. A certificate
      // with none names no one, and the CONNECT is refused (''): falling back to the user name
      // the client sends would let any holder of a certificate from the CA pick its identity
      const subject = socket.getPeerCertificate().subject?.CN as string | string[] | undefined;
      const cn = Array.isArray(subject) ? subject[0] : subject;
      return { remoteAddress, certificateUsername: typeof cn === 'string' ? cn : '' };
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
