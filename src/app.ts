import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import process from 'node:process';
import pino, { type Logger } from 'pino';
import { BrokerCore } from './broker/broker-core.js';
import { statsSnapshot, type StatsSnapshot } from './broker/stats.js';
import { SysTopics } from './broker/sys-topics.js';
import { VERSION } from './version.js';
import { HttpEndpoint } from './admin/http-server.js';
import { AdminView } from './admin/view.js';
import { BrokerMetrics } from './metrics/prometheus.js';
import type { QoS } from './codec/packets.js';
import { RC } from './codec/reason-codes.js';
import { resolveConfig } from './config/load.js';
import { socketPathTooLong } from './config/socket-path.js';
import { Durability } from './broker/durability.js';
import { Authentication } from './auth/authentication.js';
import { LoginThrottle } from './auth/login-throttle.js';
import { PasswordFile } from './auth/password-file.js';
import { AclFile } from './auth/acl-file.js';
import { LmdbStore } from './persistence/lmdb-store.js';
import type { Store, StoredState } from './persistence/store.js';
import type { Limits, MidgeConfig } from './config/schema.js';
import type { EnhancedAuthenticator } from './hooks/authenticator.js';
import type { BrokerEvents, Hooks } from './hooks/types.js';
import { Channel } from './protocol/channel.js';
import type { ProtocolSettings, SessionOwner } from './protocol/ports.js';
import { createMessage } from './session/message.js';
import { isServed, type TransportStats } from './transport/connection.js';
import { Admission, type Refusal } from './transport/admission.js';
import { MemoryGuard } from './broker/memory-guard.js';
import { ListenerGuards } from './broker/listener-guards.js';
import { RedisCluster } from './cluster/redis-cluster.js';
import { hostname } from 'node:os';
import { ConnectionPool, tcpPeerAddress, type PoolOptions } from './transport/connection-pool.js';
import { Listener, type ListenerProtocol } from './transport/listener.js';
import { TlsFiles, type TlsPaths } from './transport/tls-material.js';
import { checkAuthenticators, checkHooks, checkMqtt5, refuseCliOnlySettings, refuseUnknownOptions, requireOneOf, type Mqtt5Options } from './embed-options.js';

export type { Mqtt5Options } from './embed-options.js';
import { checkPublishOptions, type PublishOptions } from './publish-options.js';
import { LogCap } from './log.js';

export interface BrokerOptions {
  persistence?: MidgeConfig['persistence'];
  dataDir?: string;
  limits?: Partial<Limits>;
  hooks?: Hooks;
  /** MQTT 5 enhanced authentication methods offered to clients (e.g. scramSha256({ users })) */
  authenticators?: EnhancedAuthenticator[];
  /** seconds between $SYS/broker/... updates (default 10; 0 turns them off) */
  sysInterval?: number;
  /** MQTT 5 server-side options */
  mqtt5?: Mqtt5Options;
  /** a pino logger; by default warnings and errors go to stdout */
  logger?: Logger;
  /** a store of your own for persistent state (overrides `persistence`) */
  store?: Store;
  /** Mosquitto-format password file */
  passwordFile?: string;
  /** Mosquitto-format ACL file */
  aclFile?: string;
  /** clients without a user name may connect (default: only when there is no password file) */
  allowAnonymous?: boolean | '' | 'true' | 'false';
  /** redis:// URL of the Redis server shared by the nodes of a cluster (default: a single node) */
  clusterRedis?: string;
  /** this node's name in the cluster, stable across restarts (default: host name and MQTT port) */
  clusterNodeId?: string;
  /** prefix of the cluster's Redis keys and channels (default 'midge') */
  clusterPrefix?: string;
  /** bytes of messages waiting in Redis for a node past which publishers to it are held back (default 64 MiB) */
  clusterMaxBacklog?: number;
  /** Redis replicas that must have a QoS 1/2 message for another node before its publisher is acknowledged (default 0) */
  clusterWaitReplicas?: number;
}


export interface ListenOptions {
  port?: number;
  host?: string;
  /** a Unix domain socket's path, in place of host and port (a stale socket file is replaced) */
  socket?: string;
  /** 'mqtt' (TCP, the default), 'mqtts' (TLS), 'ws' or 'wss' (WebSocket on path /mqtt) */
  protocol?: ListenerProtocol;
  /** certificate, key and optional CA files for mqtts and wss */
  tls?: TlsPaths;
  /** connections this listener accepts at once (0 = no limit of its own) */
  maxConnections?: number;
  /** a PROXY protocol v1/v2 header precedes each connection (behind a load balancer) */
  proxyProtocol?: boolean;
  /** WebSocket path (default /mqtt) */
  wsPath?: string;
  /** clients without a user name may connect on this listener (default: the broker's policy) */
  allowAnonymous?: boolean;
}

const LISTEN_OPTIONS: ReadonlyArray<keyof ListenOptions> = ['port', 'host', 'socket', 'protocol', 'tls', 'maxConnections', 'proxyProtocol', 'wsPath', 'allowAnonymous'];
const LISTENER_PROTOCOLS: readonly ListenerProtocol[] = ['mqtt', 'mqtts', 'ws', 'wss'];

export interface HttpListenOptions {
  port?: number;
  /** default 127.0.0.1: metrics and the admin API are not for the open network */
  host?: string;
  /** enables the admin REST API under /api/v1 (Authorization: Bearer TOKEN) */
  adminToken?: string;
}

const LISTEN_HTTP_OPTIONS: ReadonlyArray<keyof HttpListenOptions> = ['port', 'host', 'adminToken'];

export interface ListeningAddress {
  protocol: ListenerProtocol;
  /** '' for a Unix socket */
  host: string;
  /** 0 for a Unix socket */
  port: number;
  /** the Unix socket's path, when the listener is one */
  socket?: string;
}

export interface HandleOptions {
  /** who is on the other end, for logs and login throttling (default: the socket's address, else "stream") */
  remoteAddress?: string;
  /** overrides the broker's anonymous policy for this connection */
  allowAnonymous?: boolean;
  /**
   * an identity the application has verified itself (its own TLS server's client certificate, a
   * proxy's authenticated user): the client's user name, with no password asked, as a listener's
   * `certificateAsUsername` does
   */
  verifiedUsername?: string;
}

const HANDLE_OPTIONS: ReadonlyArray<keyof HandleOptions> = ['remoteAddress', 'allowAnonymous', 'verifiedUsername'];

const MEMORY_FULL: Refusal = { reasonCode: RC.QuotaExceeded, reason: 'memory limit reached' };

/** How long close() waits for clients to take their DISCONNECT before cutting them off. */
const CLOSE_GRACE_MS = 2000;

/**
 * The composition root: the one place that joins configuration, the broker core, the protocol
 * engine and the listeners. Applications embed Midge through this class.
 */
export class Broker {
  readonly config: MidgeConfig;
  readonly logger: Logger;
  private readonly core: BrokerCore;
  private readonly listeners: Listener[] = [];
  /** the streams handed over by handle(): created on first use */
  private handled: ConnectionPool | undefined;
  /** bytes in and out over every listener */
  readonly transportStats: TransportStats = { bytesReceived: 0, bytesSent: 0, packetsReceived: 0, packetsSent: 0 };
  private closed = false;
  /** the one close() in progress or done */
  private closing: Promise<void> | undefined;
  private readonly sys: SysTopics;
  private readonly http: HttpEndpoint[] = [];
  private metricsRegistry: BrokerMetrics | undefined;
  private readonly admission: Admission;
  private readonly memory: MemoryGuard;
  private readonly store: Store | undefined;
  private readonly passwords: PasswordFile | undefined;
  private cluster: RedisCluster | undefined;
  /** stops watching certificate files */
  private readonly unwatch: Array<() => void> = [];
  /** a client can fail TLS handshakes as fast as it connects */
  private readonly tlsFailureLog = new LogCap(10, (n) =>
    this.logger.warn({ suppressed: n }, `${n} more failed TLS handshakes in the last second, not logged one by one`),
  );
  /** refusals come as fast as a misconfigured fleet, or an attacker, can connect */
  private readonly refusalLog = new LogCap(10, (n) =>
    this.logger.info({ suppressed: n }, `${n} more connections refused in the last second, not logged one by one`),
  );
  private readonly guards = new ListenerGuards((event, err) =>
    this.logger.error({ err, event }, `a '${event}' listener failed: ${err instanceof Error ? err.message : String(err)}`),
  );

  constructor(config: MidgeConfig, hooks: Hooks, logger: Logger, authenticators: EnhancedAuthenticator[] = [], mqtt5: Mqtt5Options = {}, sysInterval = 10, store?: Store) {
    this.config = config;
    this.logger = logger;
    this.admission = new Admission(config.limits);
    this.store = store;
    this.core = new BrokerCore(protocolSettings(config.limits, mqtt5), hooks, authenticators, store === undefined ? undefined : new Durability(store));
    this.core.reportFault = (err, task) => logger.error({ err, task }, `internal error in ${task}; the broker goes on`);
    if (this.core.durability !== undefined) {
      // once when the store stops taking changes and once when it takes them again, not per client
      this.core.durability.storeHealth = (error, failedMs) => {
        if (error !== undefined) {
          logger.error({ err: error }, `the store cannot write: ${error.message}; clients waiting for a commit are disconnected unacknowledged (5.0: DISCONNECT 0x83), changes wait in memory, and the broker goes on`);
        } else {
          logger.warn({ failedMs }, `the store writes again, after ${Math.round(failedMs / 1000)} s`);
        }
      };
    }
    if (store instanceof LmdbStore && store.onFatal === undefined) {
      store.onFatal = (message) => {
        logger.fatal(message);
        logger.flush();
        process.exit(1);
      };
    }
    this.memory = new MemoryGuard(
      () => this.config.limits.maxMemory,
      (full, used, limit) => {
        this.core.memoryFull = full;
        this.core.retained.memoryFull = full;
        const mb = (n: number): string => `${Math.round(n / 1048576)} MB`;
        if (full) logger.warn({ used, limit }, `memory limit reached (${mb(used)} of ${mb(limit)}${this.config.limits.maxMemory > 0 ? '' : ', 85% of the heap limit'}): new connections are refused and messages that would wait in a queue are dropped`);
        else logger.info({ used, limit }, `memory back under the limit (${mb(used)} of ${mb(limit)}): taking new connections and queueing again`);
      },
    );
    this.memory.start();
    this.core.memoryCheck = () => this.memory.check();
    this.sys = new SysTopics(this.core, this.transportStats, VERSION, sysInterval);
    this.passwords = config.passwordFile === '' ? undefined : new PasswordFile(config.passwordFile);
    if (config.aclFile !== '') this.core.acl = new AclFile(config.aclFile);
    const allowAnonymous = config.allowAnonymous === '' ? this.passwords === undefined : config.allowAnonymous === 'true';
    // always there: a listener may have an anonymous policy of its own
    this.core.authentication = new Authentication(this.passwords, allowAnonymous, new LoginThrottle());
    this.core.on('clientConnected', (c) =>
      logger.info({ clientId: c.id, address: c.remoteAddress, protocolVersion: c.protocolVersion, username: c.username }, 'client connected'),
    );
    this.core.on('clientDisconnected', (c, reason) =>
      logger.info({ clientId: c.id, address: c.remoteAddress, reason }, 'client disconnected'),
    );
    this.core.on('clientRefused', (c, reason, reasonCode) => {
      if (!this.refusalLog.admit()) return;
      const who = c.id === '' ? c.remoteAddress : `client ${c.id} (${c.remoteAddress})`;
      const code = reasonCode === undefined ? '' : ` (0x${reasonCode.toString(16).padStart(2, '0')})`;
      logger.info({ clientId: c.id, address: c.remoteAddress, reason, reasonCode }, `connection from ${who} refused: ${reason}${code}`);
    });
    this.core.on('clientStalled', (c, unreadBytes) =>
      logger.warn(
        { clientId: c.id, address: c.remoteAddress, unreadBytes },
        `client ${c.id === '' ? c.remoteAddress : c.id} is not reading what it is sent (${Math.round(unreadBytes / 1024)} KB unread): its input is not read until it does`,
      ),
    );
    this.core.on('clientDropping', (c, reason) =>
      logger.warn(
        { clientId: c.id, address: c.remoteAddress, reason },
        reason === 'memoryLimit'
          ? `messages for client ${c.id} are being dropped: the broker is over its memory limit`
          : `messages for client ${c.id} are being dropped: its queue is full (it takes them more slowly than they come)`,
      ),
    );
  }

  /** Starts a listener (MQTT over TCP unless told otherwise); resolves with the address actually bound. */
  async listen(options: ListenOptions = {}): Promise<ListeningAddress> {
    if (this.closed) throw new Error('broker is closed');
    refuseUnknownOptions(options, LISTEN_OPTIONS, 'listen', { path: 'the WebSocket path is wsPath' });
    const protocol = requireOneOf(options.protocol ?? 'mqtt', LISTENER_PROTOCOLS, 'listen: protocol');
    const tooLong = options.socket === undefined ? undefined : socketPathTooLong(options.socket);
    if (tooLong !== undefined) throw new Error(`listen: socket ${options.socket} ${tooLong}`);
    const tls = options.tls === undefined ? undefined : new TlsFiles(options.tls);
    // named by its address once bound; no handshake can fail before
    let name: string = protocol;
    const listener = new Listener({
      protocol,
      host: options.host ?? this.config.host,
      port: options.port ?? this.config.port,
      socket: options.socket,
      ...this.poolOptions('listener', options.maxConnections ?? 0),
      allowAnonymous: options.allowAnonymous,
      proxyProtocol: options.proxyProtocol ?? false,
      tls,
      wsPath: options.wsPath ?? '/mqtt',
      onError: (err, where) => this.logger.error({ err, where }, 'listener error'),
      onTlsClientError: (err, address) => {
        if (!this.tlsFailureLog.admit()) return;
        // OpenSSL's reason, without the file and line its message carries
        const reason = (err as { reason?: unknown }).reason;
        const why = typeof reason === 'string' ? reason : err.message;
        const code = (err as NodeJS.ErrnoException).code;
        this.logger.warn({ listener: name, address, code, err: why }, `TLS handshake with ${address} on ${name} failed: ${why}`);
      },
    });
    // counted from the start, so that admission sees its connections
    this.listeners.push(listener);
    if (tls !== undefined) {
      this.unwatch.push(tls.watch(() => {
        try {
          tls.reload();
          listener.reloadTls(tls);
          this.logger.info({ cert: tls.paths.cert }, 'TLS certificate reloaded');
        } catch (err) {
          this.logger.error({ err: (err as Error).message }, 'TLS certificate reload failed; the previous one stays in use');
        }
      }));
    }
    let address: AddressInfo | string;
    try {
      address = await listener.listen();
    } catch (err) {
      this.listeners.splice(this.listeners.indexOf(listener), 1);
      throw err;
    }
    this.sys.start();
    name = typeof address === 'string' ? `${protocol} ${address}` : `${protocol} ${address.address}:${address.port}`;
    if (typeof address === 'string') {
      this.logger.info({ protocol, socket: address }, 'listening');
      return { protocol, host: '', port: 0, socket: address };
    }
    this.logger.info({ protocol, host: address.address, port: address.port }, 'listening');
    return { protocol, host: address.address, port: address.port };
  }

  /**
   * Serves MQTT over a stream the application accepted itself: a socket from a server of its own (a
   * Unix domain socket, a port it already listens on), a WebSocket on its own HTTP server
   * (`createWebSocketStream` of `ws`), an in-process pipe. The connection is under the broker's
   * limits, keep alive and close() like any listener's. A stream handed to a closed broker is
   * destroyed.
   */
  handle(stream: Duplex, options: HandleOptions = {}): void {
    if (stream.readableObjectMode || stream.readableEncoding !== null) {
      throw new TypeError('handle() needs a byte stream: this one is in object mode or decodes text');
    }
    if (isServed(stream)) throw new TypeError('handle() was given a stream the broker already serves');
    refuseUnknownOptions(options, HANDLE_OPTIONS, 'handle');
    if (this.closed) {
      stream.destroy();
      return;
    }
    let pool = this.handled;
    if (pool === undefined) {
      pool = new ConnectionPool(this.poolOptions('handled', 0));
      pool.startTicking();
      this.handled = pool;
      // a broker served only through handle() has $SYS too (start() does nothing the second time)
      this.sys.start();
    }
    const remoteAddress = options.remoteAddress ?? tcpPeerAddress(stream) ?? 'stream';
    // read at CONNECT, so setting it after accepting is in time
    const peer = options.verifiedUsername === undefined ? { remoteAddress } : { remoteAddress, certificateUsername: options.verifiedUsername };
    pool.accept(stream, peer).allowAnonymous = options.allowAnonymous;
    // MQTT has no half-closed connection: a peer that ended its side is gone. A socket closes by
    // itself then, but not every stream does (ws's createWebSocketStream only ends).
    stream.on('end', destroyStream);
  }

  /** What every set of connections shares: the broker's limits, admission and protocol engine. */
  private poolOptions(name: string, maxConnections: number): PoolOptions {
    const limits = this.config.limits;
    return {
      maxPacketSize: limits.maxPacketSize,
      connectTimeoutMs: limits.connectTimeoutMs,
      maxConnections,
      name,
      stats: this.transportStats,
      admit: () => (this.core.memoryFull ? MEMORY_FULL : this.admission.admit(this.openConnections())),
      attach: (conn) => new Channel(conn, this.core),
      onInternalError: (err, address) => this.logger.error({ err, address }, `internal error serving ${address}; its connection is closed`),
    };
  }

  /** Every set of connections: the listeners' and the handled streams'. */
  private pools(): ConnectionPool[] {
    return this.handled === undefined ? this.listeners : [...this.listeners, this.handled];
  }

  private openConnections(): number {
    let n = 0;
    for (const p of this.pools()) n += p.connectionCount;
    return n;
  }

  /** Prometheus metrics of this broker (created on first use). */
  get metrics(): BrokerMetrics {
    if (this.metricsRegistry === undefined) {
      const metrics = new BrokerMetrics(() => this.stats);
      if (this.core.durability !== undefined) this.core.durability.observeCommit = (s) => metrics.commitSeconds.observe(s);
      this.metricsRegistry = metrics;
    }
    return this.metricsRegistry;
  }

  /** Starts the HTTP endpoint: /metrics, /healthz, /readyz and, with a token, the admin API. */
  async listenHttp(options: HttpListenOptions = {}): Promise<{ host: string; port: number }> {
    if (this.closed) throw new Error('broker is closed');
    refuseUnknownOptions(options, LISTEN_HTTP_OPTIONS, 'listenHttp');
    const endpoint = new HttpEndpoint({
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 8080,
      adminToken: options.adminToken,
      metrics: this.metrics,
      ready: () => !this.closed && (this.listeners.length > 0 || this.handled !== undefined),
      api: {
        view: new AdminView(this.core),
        publish: (m) => this.publish(m),
        cluster: () => this.cluster,
      },
    });
    const address = await endpoint.listen();
    this.http.push(endpoint);
    this.logger.info({ host: address.address, port: address.port }, 'http endpoint listening');
    return { host: address.address, port: address.port };
  }

  /**
   * Reads the password file, the ACL file and the TLS certificates again (SIGHUP), each on its own:
   * a file with a mistake is refused and keeps its previous version, and the others take their new
   * one. Throws when one was refused, saying which, why, and what was reloaded.
   */
  reload(): void {
    const refused: string[] = [];
    const reloaded: string[] = [];
    const attempt = (what: string, read: () => void): void => {
      try {
        read();
        reloaded.push(what);
      } catch (err) {
        refused.push(`${what} was refused and keeps its previous version (${(err as Error).message})`);
      }
    };
    const passwords = this.passwords;
    if (passwords !== undefined) attempt(`the password file ${passwords.path}`, () => passwords.reload());
    const acl = this.core.acl;
    if (acl !== undefined) attempt(`the ACL file ${acl.path}`, () => acl.reload());
    for (const l of this.listeners) {
      const tls = l.options.tls;
      if (tls === undefined) continue;
      attempt(`the TLS certificate ${tls.paths.cert}`, () => {
        tls.reload();
        l.reloadTls(tls);
      });
    }
    if (refused.length > 0) {
      throw new Error(`${refused.join('; ')}${reloaded.length === 0 ? '' : `; ${reloaded.join(', ')} ${reloaded.length === 1 ? 'was' : 'were'} reloaded`}`);
    }
  }

  /**
   * Applies a new configuration (SIGHUP with a config file): the log level and every limit take
   * effect at once (limits of a connection's own, like its inflight window, from its next connect).
   * Returns the settings that changed but need a restart (addresses, store, files' paths).
   */
  updateConfig(next: MidgeConfig): string[] {
    const current = this.config as { -readonly [K in keyof MidgeConfig]: MidgeConfig[K] };
    if (next.logLevel !== current.logLevel) {
      this.logger.level = next.logLevel;
      current.logLevel = next.logLevel;
    }
    Object.assign(current.limits, next.limits);
    Object.assign(this.core.settings, next.limits);
    this.core.retained.maxMessages = next.limits.maxRetainedMessages;
    this.admission.limits = { maxConnections: next.limits.maxConnections, maxConnectionRate: next.limits.maxConnectionRate };
    for (const p of this.pools()) {
      p.options.maxPacketSize = next.limits.maxPacketSize;
      p.options.connectTimeoutMs = next.limits.connectTimeoutMs;
    }
    const fixed = ['host', 'port', 'dataDir', 'persistence', 'clusterRedis', 'clusterNodeId', 'clusterPrefix', 'clusterMaxBacklog', 'clusterWaitReplicas', 'passwordFile', 'aclFile', 'allowAnonymous', 'httpPort', 'httpHost', 'adminToken', 'sysInterval'] as const;
    const needRestart: string[] = fixed.filter((k) => next[k] !== current[k]);
    if (JSON.stringify(next.listeners) !== JSON.stringify(current.listeners)) needRestart.push('listeners');
    return needRestart;
  }

  /** Reads TLS certificates and keys again; new handshakes use them, live connections go on. */
  reloadTls(): void {
    for (const l of this.listeners) {
      const tls = l.options.tls;
      if (tls === undefined) continue;
      tls.reload();
      l.reloadTls(tls);
    }
  }

  /**
   * Publishes a message as the broker itself (no client); retained messages are stored. QoS 1/2
   * resolves once the message is on disk and with the other nodes of a cluster. Options a client's
   * PUBLISH could not carry are refused (TypeError or RangeError), before anything is sent or kept.
   */
  async publish(options: PublishOptions): Promise<void> {
    if (this.closed) throw new Error('broker is closed');
    const p = checkPublishOptions(options, this.config.limits);
    // the clients were told in CONNACK that no message is retained here
    if (p.retain && !this.core.settings.retainAvailable) throw new Error('publish: retain is not available (mqtt5.retainAvailable is false)');
    const message = createMessage(p.topic, p.payload, p.qos, p.retain, p.properties, this.core, undefined);
    if (this.core.listenerCount('messagePublished') > 0) this.core.emit('messagePublished', message, undefined);
    // QoS 1/2: settles once the message is on disk and with the other nodes, and says when it could not be
    await this.core.publish(message);
  }

  /**
   * Stops accepting, sends MQTT 5 clients DISCONNECT 0x8B, and closes every connection. A second
   * call (a signal handler's and the application's own) gets the first one's promise: the data dir
   * is not free before that has settled.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    this.sys.stop();
    this.memory.stop();
    for (const stop of this.unwatch) stop();
    await Promise.all(this.http.map((h) => h.close()));
    for (const l of this.listeners) l.stopAccepting();
    for (const session of [...this.core.sessions.values()]) {
      (session.sink as SessionOwner | undefined)?.disconnect(RC.ServerShuttingDown);
    }
    await Promise.all(this.pools().map((p) => p.drain(CLOSE_GRACE_MS)));
    await this.cluster?.stop();
    this.core.sessions.clear();
    this.core.wills.clear();
    // sessions, queues and pending wills stay in the store for the next start
    this.core.durability?.flushOwed();
    this.core.durability?.stop();
    if (this.store !== undefined) await this.store.close();
    this.logger.info('stopped');
  }

  /** Adds an application's listener; one that throws or rejects is logged, and the broker goes on. */
  on<K extends keyof BrokerEvents>(event: K, listener: (...args: BrokerEvents[K]) => void): this {
    this.core.on(event, this.guards.wrap(event, listener as never) as never);
    return this;
  }

  off<K extends keyof BrokerEvents>(event: K, listener: (...args: BrokerEvents[K]) => void): this {
    const guarded = this.guards.unwrap(event, listener as never);
    if (guarded !== undefined) this.core.off(event, guarded as never);
    return this;
  }

  /** Brings back what the store kept; called once by createBroker, before the first listener opens. */
  restore(state: StoredState): void {
    this.core.restore(state, this.config.clusterRedis === '');
    this.core.durability?.startAliveNotes();
    const n = state.sessions.length;
    if (n > 0 || state.retained.length > 0) {
      this.logger.info({ sessions: n, retained: state.retained.length, wills: state.wills.length }, 'state restored');
    }
  }

  /**
   * Joins the cluster named by `clusterRedis`; called once by createBroker, after restore() and
   * before the first listener opens.
   */
  async joinCluster(): Promise<void> {
    const config = this.config;
    const cluster = new RedisCluster(this.core, {
      redis: config.clusterRedis,
      nodeId: config.clusterNodeId === '' ? `${hostname()}:${config.port}` : config.clusterNodeId,
      prefix: config.clusterPrefix,
      maxBacklog: config.clusterMaxBacklog,
      waitReplicas: config.clusterWaitReplicas,
    }, this.logger);
    await cluster.start();
    this.cluster = cluster;
  }

  /** Counts for observability (and the tests). */
  get stats(): StatsSnapshot {
    return statsSnapshot(this.core, this.transportStats, this.cluster?.stats);
  }
}

function destroyStream(this: Duplex): void {
  this.destroy();
}

/** Validates the options (one-line ConfigError on a mistake) and builds a broker. */
export async function createBroker(options: BrokerOptions = {}): Promise<Broker> {
  refuseCliOnlySettings(options);
  checkHooks(options.hooks);
  checkMqtt5(options.mqtt5);
  checkAuthenticators(options.authenticators);
  const { hooks, logger, authenticators, mqtt5, sysInterval, store: _store, ...settings } = options;
  if (sysInterval !== undefined && !(Number.isFinite(sysInterval) && sysInterval >= 0)) {
    throw new Error(`createBroker options: sysInterval must be a number of seconds >= 0 (got ${String(sysInterval)})`);
  }
  // the interval in force, not the default, is what a reload compares a new file's value with
  const config = { ...resolveConfig(settings, 'createBroker options'), ...(sysInterval === undefined ? {} : { sysInterval }) };
  // the data dir is taken for this broker before its store is read: a second broker on it is refused
  const store = options.store ?? (config.persistence === 'lmdb' ? await LmdbStore.openExclusive(config.dataDir) : undefined);
  let broker: Broker;
  try {
    broker = new Broker(config, hooks ?? {}, logger ?? pino({ level: 'warn' }), authenticators, mqtt5, sysInterval, store);
    if (store !== undefined) broker.restore(await store.load());
  } catch (err) {
    // a store opened here is closed again, which lets go of its data dir
    if (options.store === undefined) await store?.close().catch(() => undefined);
    throw err;
  }
  if (config.clusterRedis !== '') {
    try {
      await broker.joinCluster();
    } catch (err) {
      await broker.close();
      throw err;
    }
  }
  return broker;
}

function protocolSettings(limits: Limits, mqtt5: Mqtt5Options): ProtocolSettings {
  return {
    ...limits,
    maximumQoS: mqtt5.maximumQoS ?? 2,
    retainAvailable: mqtt5.retainAvailable ?? true,
    wildcardSubscriptionAvailable: mqtt5.wildcardSubscriptionAvailable ?? true,
    subscriptionIdentifiersAvailable: mqtt5.subscriptionIdentifiersAvailable ?? true,
    sharedSubscriptionAvailable: mqtt5.sharedSubscriptionAvailable ?? true,
    responseInformationPrefix: mqtt5.responseInformationPrefix ?? 'response/',
    serverReference: mqtt5.serverReference,
    serverMoved: mqtt5.serverMoved ?? false,
  };
}
