import type { Properties, ProtocolVersion, QoS } from '../codec/packets.js';

/** What hooks and events see of a connected client. */
export interface ClientInfo {
  readonly id: string;
  readonly username: string | undefined;
  readonly remoteAddress: string;
  readonly protocolVersion: ProtocolVersion;
  /** ms since the epoch when the CONNECT arrived */
  readonly connectedAt: number;
  /** seconds, as in force for the connection */
  readonly keepAlive: number;
}

export interface Credentials {
  readonly username: string | undefined;
  readonly password: Buffer | undefined;
}

export interface PublishInfo {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: QoS;
  readonly retain: boolean;
  readonly properties?: Properties;
}

export interface SubscribeInfo {
  readonly topicFilter: string;
  readonly qos: QoS;
}

export type MaybePromise<T> = T | Promise<T>;

/**
 * Extension points. Each may answer synchronously or with a promise; a synchronous answer keeps
 * the publish path free of promises. Returning false refuses: CONNACK 0x86/0x87 (3.1.1: 4/5),
 * PUBACK/PUBREC 0x87 (3.1.1: the message is dropped), SUBACK 0x87 (3.1.1: 0x80).
 * A hook that throws or rejects counts as a refusal.
 */
export interface Hooks {
  authenticate?(client: ClientInfo, credentials: Credentials): MaybePromise<boolean>;
  authorizePublish?(client: ClientInfo, message: PublishInfo): MaybePromise<boolean>;
  authorizeSubscribe?(client: ClientInfo, subscription: SubscribeInfo): MaybePromise<boolean>;
}

/** Events the broker emits (see Broker.on). */
export interface BrokerEvents {
  clientConnected: [client: ClientInfo];
  clientDisconnected: [client: ClientInfo, reason: string];
  messagePublished: [message: PublishInfo, client: ClientInfo | undefined];
  subscribed: [client: ClientInfo, topicFilter: string, qos: QoS];
  unsubscribed: [client: ClientInfo, topicFilter: string];
  /**
   * a connection closed before its client was let in: its CONNECT refused (bad credentials, an
   * invalid client identifier, a limit), a packet other than CONNECT first, no CONNECT in time, or
   * its authentication not finished in time.
   * `client.id` is empty when no CONNECT was read; `reasonCode` is the MQTT 5 code, when there is one
   */
  clientRefused: [client: ClientInfo, reason: string, reasonCode: number | undefined];
  /** the client left `unreadBytes` of output unread: its input is not read until it reads (once a connection) */
  clientStalled: [client: ClientInfo, unreadBytes: number];
  /**
   * messages for the client's session started to be dropped (its queue was full, or the broker over
   * its memory limit): once, then again only after its queue has emptied
   */
  clientDropping: [client: ClientInfo, reason: 'queueFull' | 'memoryLimit'];
}
