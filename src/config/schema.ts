import type { ProtocolSettings } from '../protocol/ports.js';
import type { ListenerConfig } from './listeners.js';

/** The protocol engine's limits that a configuration sets (the rest of its settings come from `mqtt5`). */
type ConfiguredProtocolLimits = Omit<
  ProtocolSettings,
  | 'maximumQoS'
  | 'retainAvailable'
  | 'wildcardSubscriptionAvailable'
  | 'subscriptionIdentifiersAvailable'
  | 'sharedSubscriptionAvailable'
  | 'responseInformationPrefix'
  | 'serverReference'
  | 'serverMoved'
>;

/** Per-client and broker-wide limits, each with a safe default (LIMIT_SPECS below). */
export interface Limits extends ConfiguredProtocolLimits {
  /** connections open at once over all listeners; 0 = no limit */
  maxConnections: number;
  /** new connections per second; 0 = no limit */
  maxConnectionRate: number;
  /** bytes of heap and buffers past which new work is refused; 0 = 85% of the heap limit */
  maxMemory: number;
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type PersistenceKind = 'memory' | 'lmdb';

export interface MidgeConfig {
  host: string;
  port: number;
  dataDir: string;
  logLevel: LogLevel;
  persistence: PersistenceKind;
  /** Mosquitto-format password file ('' = none) */
  passwordFile: string;
  /** Mosquitto-format ACL file ('' = none) */
  aclFile: string;
  /** 'true' / 'false'; '' = allowed exactly when there is no password file */
  allowAnonymous: '' | 'true' | 'false';
  /** HTTP endpoint (metrics, health, admin API): port, -1 = off */
  httpPort: number;
  httpHost: string;
  /** '' = admin API off */
  adminToken: string;
  /** seconds between $SYS updates; 0 = off */
  sysInterval: number;
  /** URL of the Redis (server, Sentinel or Redis Cluster) a cluster's nodes share ('' = a single node) */
  clusterRedis: string;
  /** this node's name in the cluster ('' = host name and MQTT port) */
  clusterNodeId: string;
  /** prefix of the cluster's Redis keys and channels */
  clusterPrefix: string;
  /** bytes waiting in a node's inbox past which publishers to that node are held back */
  clusterMaxBacklog: number;
  /** Redis replicas that must have a QoS 1/2 message for another node before its publisher is acknowledged (0 = none) */
  clusterWaitReplicas: number;
  /** listeners the command line opens instead of the single host/port one (undefined = that one) */
  listeners: ListenerConfig[] | undefined;
  limits: Limits;
}

/** One setting: its type, default, bounds and what it is for (drives validation, help and docs). */
export interface SettingSpec {
  key: string;
  /** 'string' may not be empty; 'text' may ('' = unset) */
  type: 'integer' | 'string' | 'text' | 'enum' | 'path' | 'boolean';
  default: number | string;
  min?: number;
  max?: number;
  values?: readonly string[];
  description: string;
}

const U32 = 4294967295;

export const LIMIT_SPECS: readonly SettingSpec[] = [
  { key: 'maxPacketSize', type: 'integer', default: 1048576, min: 16, max: 268435455, description: 'largest MQTT packet accepted, in bytes (5.0 clients are told; 0x95 beyond it)' },
  { key: 'receiveMaximum', type: 'integer', default: 1024, min: 1, max: 65535, description: 'unacknowledged QoS 1/2 publishes a 5.0 client may have in flight to the broker' },
  { key: 'maxInflight', type: 'integer', default: 64, min: 1, max: 65535, description: 'unacknowledged QoS 1/2 messages the broker sends to one client before queueing' },
  // Mosquitto's max_inflight_bytes: with large messages the count alone lets one client that stops
  // reading hold maxInflight of them in its socket's buffers
  { key: 'maxInflightBytes', type: 'integer', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, description: 'payload bytes of unacknowledged QoS 1/2 messages the broker sends to one client before queueing (0 = no limit but maxInflight)' },
  { key: 'maxQueuedMessages', type: 'integer', default: 1000, min: 0, max: U32, description: 'messages queued per session; when full the oldest QoS 0 goes first' },
  { key: 'maxQueuedBytes', type: 'integer', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, description: 'payload bytes queued per session (0 = no limit but maxQueuedMessages); when full the oldest QoS 0 goes first' },
  // HiveMQ's queued-messages-strategy; Mosquitto drops the new message. Dropping it costs a count
  // check; taking out the oldest touches a message that left the cache long ago, for every
  // subscriber that stopped reading, for every message
  { key: 'queueFullDrop', type: 'enum', default: 'oldest', values: ['oldest', 'new'], description: 'what a full queue drops: its oldest QoS 0 messages, then the new one if that is not enough (oldest), or the new message (new)' },
  { key: 'offlineQos0', type: 'enum', default: 'drop', values: ['drop', 'queue'], description: 'QoS 0 messages for an offline persistent session: drop them, or queue them with its QoS 1/2 messages under the same limits (QoS 0 goes first when full; not kept across a restart)' },
  { key: 'maxTopicLength', type: 'integer', default: 65535, min: 1, max: 65535, description: 'longest topic name or filter, in UTF-8 bytes' },
  { key: 'maxTopicLevels', type: 'integer', default: 128, min: 1, max: 65535, description: 'most levels in a topic name or filter' },
  { key: 'maxClientIdLength', type: 'integer', default: 256, min: 23, max: 65535, description: 'longest client identifier, in UTF-8 bytes' },
  { key: 'maxSubscriptionsPerClient', type: 'integer', default: 1000, min: 1, max: U32, description: 'subscriptions one session may hold' },
  // Without it a session could hold maxSubscriptionsPerClient filters of maxTopicLength bytes each
  // (up to 64 MB of heap at the defaults), which the memory guard does not take back. 1 MiB lets
  // every one of 1000 subscriptions name a 1 KB filter.
  { key: 'maxSubscriptionBytes', type: 'integer', default: 1048576, min: 0, max: Number.MAX_SAFE_INTEGER, description: "UTF-8 bytes of topic filters one session's subscriptions may hold in all, shared ones as sent ($share/group/filter) (0 = no limit; SUBACK 0x97, 3.1.1: 0x80, for a filter that would go beyond it)" },
  { key: 'connectTimeoutMs', type: 'integer', default: 10000, min: 100, max: 600000, description: 'time a new connection has, from its accept, to send CONNECT (a PROXY header, the TLS handshake and the WebSocket upgrade included)' },
  { key: 'maxKeepAlive', type: 'integer', default: 0, min: 0, max: 65535, description: 'cap on the keep alive in seconds (0 = no cap; 5.0 clients are told)' },
  { key: 'maxSessionExpiryInterval', type: 'integer', default: U32, min: 0, max: U32, description: 'cap on a session expiry interval in seconds' },
  { key: 'topicAliasMaximum', type: 'integer', default: 1024, min: 0, max: 65535, description: 'topic aliases a 5.0 client may use towards the broker' },
  // Without it a client could hold topicAliasMaximum topics of 64 KB each (64 MB of heap) for as long
  // as it stays connected. 256 KB lets every one of 1024 aliases name a 256-byte topic, more than
  // clients that alias their few hot topics, or every topic they publish to, come near.
  { key: 'maxTopicAliasBytes', type: 'integer', default: 262144, min: 0, max: Number.MAX_SAFE_INTEGER, description: "UTF-8 bytes of topic names a 5.0 client's topic aliases towards the broker may hold in all (0 = no limit; DISCONNECT 0x97 for a PUBLISH that would go beyond it)" },
  { key: 'maxConnections', type: 'integer', default: 0, min: 0, max: U32, description: 'connections open at once over all listeners (0 = no limit; 0x97 beyond it)' },
  { key: 'maxConnectionRate', type: 'integer', default: 0, min: 0, max: U32, description: 'new connections per second (0 = no limit; 0x9F beyond it)' },
  { key: 'maxPublishRate', type: 'integer', default: 0, min: 0, max: U32, description: 'PUBLISH packets per second per client (0 = no limit; see publishRateAction)' },
  { key: 'maxPublishBytesRate', type: 'integer', default: 0, min: 0, max: U32, description: 'PUBLISH payload bytes per second per client (0 = no limit)' },
  { key: 'publishRateAction', type: 'enum', default: 'refuse', values: ['refuse', 'throttle'], description: 'over a publish rate: refuse (5.0: PUBACK/PUBREC 0x97, QoS 0 dropped) or throttle (read from the client more slowly, nothing dropped); 3.1.1 clients, which cannot be told, are always throttled' },
  { key: 'maxRetainedMessages', type: 'integer', default: 0, min: 0, max: U32, description: 'retained messages stored (0 = no limit; at the limit a new topic is refused to 5.0 clients with 0x97 at QoS 1/2, delivered but not retained at QoS 0 and from 3.1.1 clients)' },
  { key: 'maxMemory', type: 'integer', default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, description: 'bytes of JavaScript heap and buffers (0: the heap alone, at 85% of its limit); past it new connections and new subscriptions are refused (0x97), messages that would wait in a queue are dropped and new retained topics refused, until use falls below 90% of it' },
];

export const TOP_SPECS: readonly SettingSpec[] = [
  { key: 'host', type: 'string', default: '127.0.0.1', description: 'address the MQTT listener binds (0.0.0.0 for every interface)' },
  { key: 'port', type: 'integer', default: 1883, min: 0, max: 65535, description: 'MQTT over TCP port' },
  { key: 'dataDir', type: 'string', default: './data', description: 'directory of the on-disk store' },
  { key: 'logLevel', type: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], description: 'log level' },
  { key: 'persistence', type: 'enum', default: 'memory', values: ['memory', 'lmdb'], description: 'where sessions and messages are kept' },
  { key: 'passwordFile', type: 'path', default: '', description: 'Mosquitto-format password file (users with $7$ or $6$ hashes)' },
  { key: 'aclFile', type: 'path', default: '', description: 'Mosquitto-format ACL file (topic/pattern read|write|readwrite|deny rules)' },
  { key: 'allowAnonymous', type: 'boolean', default: '', description: 'clients without a user name may connect (default: only when there is no password file)' },
  { key: 'httpPort', type: 'integer', default: -1, min: -1, max: 65535, description: 'HTTP port for /metrics, /healthz, /readyz and the admin API (-1 = off)' },
  { key: 'httpHost', type: 'string', default: '127.0.0.1', description: 'address the HTTP endpoint binds' },
  { key: 'adminToken', type: 'text', default: '', description: 'bearer token that turns on the admin API under /api/v1' },
  { key: 'clusterRedis', type: 'text', default: '', description: 'redis:// (or rediss://) URL of the Redis server shared by the nodes of a cluster, or redis+sentinel://host:port[,host:port...]/master-name for a master watched by Redis Sentinel, or redis+cluster://host:port[,host:port...] for a Redis Cluster (empty: a single node)' },
  { key: 'clusterNodeId', type: 'text', default: '', description: "this node's name in the cluster, stable across restarts (empty: host name and MQTT port)" },
  { key: 'clusterPrefix', type: 'string', default: 'midge', description: "prefix of the cluster's Redis keys and channels (clusters sharing a Redis server need different ones)" },
  { key: 'clusterWaitReplicas', type: 'integer', default: 0, min: 0, max: 16, description: 'Redis replicas that must have a QoS 1/2 message for another node before its publisher is acknowledged (Redis WAIT, at most 1 s; 0: the master alone), so that a Redis failover loses no acknowledged message' },
  { key: 'clusterMaxBacklog', type: 'integer', default: 67108864, min: 65536, max: Number.MAX_SAFE_INTEGER, description: "bytes of messages waiting in Redis for a node past which QoS 1/2 publishers to it wait for their acknowledgements and QoS 0 messages for it are dropped, until it is under half of that" },
  { key: 'sysInterval', type: 'integer', default: 10, min: 0, max: 86400, description: 'seconds between $SYS/broker updates (0 = off)' },
];

function defaultsOf(specs: readonly SettingSpec[]): Record<string, number | string> {
  return Object.fromEntries(specs.map((s) => [s.key, s.default]));
}

export const DEFAULT_LIMITS: Limits = defaultsOf(LIMIT_SPECS) as unknown as Limits;
export const DEFAULT_CONFIG: MidgeConfig = { ...(defaultsOf(TOP_SPECS) as unknown as Omit<MidgeConfig, 'limits' | 'listeners'>), listeners: undefined, limits: DEFAULT_LIMITS };
