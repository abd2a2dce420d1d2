// The embedding API: `import { createBroker } from 'midge'`.
export { Broker, createBroker } from './app.js';
export type { BrokerOptions, HandleOptions, HttpListenOptions, ListenOptions, ListeningAddress, Mqtt5Options } from './app.js';
export type { PublishOptions, PublishProperties } from './publish-options.js';
export type { BrokerEvents, ClientInfo, Credentials, Hooks, PublishInfo, SubscribeInfo } from './hooks/types.js';
export type { Limits, MidgeConfig } from './config/schema.js';
export type { Properties, QoS, ProtocolVersion } from './codec/packets.js';
export { RC } from './codec/reason-codes.js';
export type { AuthConversation, AuthOutcome, EnhancedAuthenticator } from './hooks/authenticator.js';
export { scramCredentials, scramSha256 } from './auth/scram-sha-256.js';
export type { ScramCredentials, ScramOptions } from './auth/scram-sha-256.js';
export type { TlsPaths } from './transport/tls-material.js';
export type { StatsSnapshot } from './broker/stats.js';
export { VERSION } from './version.js';
export { MemoryStore } from './persistence/memory-store.js';
export { LmdbStore } from './persistence/lmdb-store.js';
export { StoreError } from './persistence/store.js';
export type { Store, StoredState, SessionRecord, InflightRecord, WillRecord } from './persistence/store.js';
