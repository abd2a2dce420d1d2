import type { ConnectPacket, QoS, Will } from '../codec/packets.js';
import type { EnhancedAuthenticator } from '../hooks/authenticator.js';
import type { ClientInfo, Credentials, MaybePromise, PublishInfo, SubscribeInfo } from '../hooks/types.js';
import type { Message } from '../session/message.js';
import type { MatchMemo } from '../topic/subscription-trie.js';
import type { DeliverySink, Session, Subscription } from '../session/session.js';

/** The limits and capabilities the protocol engine enforces and advertises. */
export interface ProtocolSettings {
  maxPacketSize: number;
  receiveMaximum: number;
  maxInflight: number;
  /** payload bytes of QoS 1/2 messages in flight to one client; 0 = no bound but the count */
  maxInflightBytes: number;
  maxQueuedMessages: number;
  /** payload bytes queued per session; 0 = no bound but the message count */
  maxQueuedBytes: number;
  /** what a full queue drops: its oldest QoS 0 messages (then the new one), or the new message */
  queueFullDrop: 'oldest' | 'new';
  /** QoS 0 messages for an offline persistent session: dropped, or queued with the QoS 1/2 ones */
  offlineQos0: 'drop' | 'queue';
  maxTopicLength: number;
  maxTopicLevels: number;
  maxClientIdLength: number;
  maxSubscriptionsPerClient: number;
  /** UTF-8 bytes of topic filters one session's subscriptions may hold in all; 0 = no limit */
  maxSubscriptionBytes: number;
  connectTimeoutMs: number;
  /** seconds; 0 = no cap */
  maxKeepAlive: number;
  maxSessionExpiryInterval: number;
  topicAliasMaximum: number;
  /** UTF-8 bytes of topic names one client's inbound aliases may hold in all; 0 = no limit */
  maxTopicAliasBytes: number;
  /** per client, 0 = no limit */
  maxPublishRate: number;
  maxPublishBytesRate: number;
  publishRateAction: 'refuse' | 'throttle';
  /** 0 = no limit */
  maxRetainedMessages: number;
  maximumQoS: QoS;
  retainAvailable: boolean;
  wildcardSubscriptionAvailable: boolean;
  subscriptionIdentifiersAvailable: boolean;
  sharedSubscriptionAvailable: boolean;
  /** 5.0: prefix of the Response Information given to clients that ask for it; '' gives none */
  responseInformationPrefix: string;
  /** 5.0: send every client elsewhere (CONNACK 0x9C, or 0x9D when `serverMoved`) */
  serverReference: string | undefined;
  serverMoved: boolean;
}

/** What the protocol engine needs from the network connection (implemented by transport). */
export interface ConnectionPort {
  readonly remoteAddress: string;
  /** the subject CN of a verified client certificate, when the listener uses it as the username ('' when it has none) */
  readonly certificateUsername: string | undefined;
  /** the listener's own anonymous policy, when it has one */
  readonly allowAnonymous: boolean | undefined;
  /** set when the connection is over a broker or listener limit: the CONNECT is refused with it */
  readonly refusal: { readonly reasonCode: number; readonly reason: string } | undefined;
  /** true while the socket's write buffer is above its high-water mark */
  readonly congested: boolean;
  write(bytes: Buffer): void;
  /** a PUBLISH as head + shared payload, written without copying the payload */
  writeFrame(head: Buffer, payload: Buffer): void;
  /** keep alive in seconds (0 = none): the connection is timed out after 1.5x without a packet */
  setKeepAlive(seconds: number): void;
  pauseReading(): void;
  resumeReading(): void;
  /**
   * flush what was written, then close. `reasonCode` (a 5.0 reason code, whatever the client's
   * version) says why when it is not a normal close: a transport that has its own way to say it
   * (a WebSocket close code) uses it
   */
  close(reasonCode?: number): void;
  /** an error of the broker's own met while serving this connection, for the log */
  reportError(err: unknown): void;
}

/** The live connection a session is attached to; the broker drives it through this. */
export interface SessionOwner extends DeliverySink {
  readonly client: ClientInfo;
  /** the will to publish should the connection be lost */
  readonly will: Will | undefined;
}

export interface OpenedSession {
  session: Session;
  present: boolean;
  /** clean start ended a session the store keeps: its removal is on its way to disk (committed()) */
  discardedStored?: boolean;
}

/**
 * What committed() rejects with when the store could not make the commit (a full disk): the
 * broker's own fault, so what waited for it is not acknowledged and its client is closed with
 * 0x83 (5.0), not with the 0x80 of other failures (the other nodes of a cluster).
 */
export class StoreFault extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreFault';
  }
}

/** Message counts kept by the broker and moved by the protocol engine (plain fields: cheap on the hot path). */
export interface MessageCounters {
  /** accepted from clients (and the broker itself), by QoS */
  readonly received: [number, number, number];
  /** PUBLISH packets written to clients, by QoS (resends included) */
  readonly sent: [number, number, number];
  /** deliveries not made, by reason */
  readonly dropped: {
    queueFull: number;
    tooLarge: number;
    expired: number;
    notAuthorized: number;
    /** 5.0 publishes refused for going over the client's publish rate */
    rateLimited: number;
    /** deliveries that would have waited in a queue while the broker was over maxMemory */
    memoryLimit: number;
  };
  /** publishes that put their client over its publish rate (it was paused, nothing was dropped) */
  throttled: number;
  /** retained messages not stored because maxRetainedMessages or maxMemory was reached (they were still delivered) */
  retainedRefused: number;
}

/** What the protocol engine needs from the broker (implemented by broker/). */
export interface BrokerPort {
  readonly settings: ProtocolSettings;
  readonly counters: MessageCounters;
  /** coarse clock in ms, advanced by the broker's tick */
  now(): number;
  /** a fresh client identifier for a 5.0 (or clean 3.1.1) client that sent an empty one */
  assignClientId(): string;
  /** the enhanced-authentication method of that name (5.0 CONNECT Authentication Method), if offered */
  authenticator(method: string): EnhancedAuthenticator | undefined;
  /** `certified`: the user name comes from a verified client certificate */
  authenticate(client: ClientInfo, credentials: Credentials, connect: ConnectPacket, certified?: boolean, allowAnonymous?: boolean): MaybePromise<boolean>;
  authorizePublish(client: ClientInfo, message: PublishInfo): MaybePromise<boolean>;
  authorizeSubscribe(client: ClientInfo, subscription: SubscribeInfo): MaybePromise<boolean>;
  /**
   * Before openSession: in a cluster, the client id is taken from any other node holding it (its
   * connection closed there, its session moved here). Undefined when there is nothing to wait for.
   */
  claimSession(clientId: string, cleanStart: boolean): Promise<void> | undefined;
  /** Takes over any live connection of the client id, then resumes or creates its session. */
  openSession(owner: SessionOwner, cleanStart: boolean, expiryInterval: number): OpenedSession;
  /**
   * The owner's connection ended. `will` is published (after its delay) unless undefined;
   * the session ends now if its expiry interval is 0.
   */
  closeSession(owner: SessionOwner, session: Session, will: Will | undefined, reason: string): void;
  /**
   * Routes a message (and stores it when retained). A promise means: acknowledge after it settles.
   * `memo` is the publisher's own, so that a topic it repeats is not matched again.
   */
  publish(message: Message, memo?: MatchMemo): void | Promise<void>;
  /** Resolves when every change so far is durable; undefined when nothing is kept on disk. */
  committed(): Promise<void> | undefined;
  /** true when the store is on disk: committed() then waits for it */
  readonly onDisk: boolean;
  /** Adds or replaces a subscription; returns true when it replaced an existing one. */
  subscribe(session: Session, subscription: Subscription): boolean;
  /** Returns true when the subscription existed. */
  unsubscribe(session: Session, filter: string): boolean;
  /**
   * In a cluster: settles once the other nodes have been told of every subscription so far (a
   * SUBACK waits for it, so that a message published elsewhere after it finds the subscriber).
   * Undefined when there is nothing to wait for.
   */
  subscriptionsShared(): Promise<void> | undefined;
  /** Whether a retained message on `topic` would be stored (the retained limit). */
  retainedHasRoom(topic: string): boolean;
  /** Retained messages matching a filter that `reader` may read, expired ones left out. */
  retainedMessages(topicFilter: string, reader: Session): Message[];
  /** retained messages stored */
  readonly retainedCount: number;
  /** true while the broker is over its memory limit: nothing more may wait in a queue */
  readonly memoryFull: boolean;
  /** Measures memory now, before something large is taken on; returns memoryFull. */
  checkMemory(): boolean;
  /** Observability: a message was accepted from a client. */
  messageReceived(message: Message, client: ClientInfo): void;
  /** Observability: a connection was closed before its client was let in (see BrokerEvents). */
  clientRefused(client: ClientInfo, reason: string, reasonCode: number | undefined): void;
  /** Observability: the client does not read what it is sent (see BrokerEvents). */
  clientStalled(client: ClientInfo, unreadBytes: number): void;
  /** Observability: messages for the client started to be dropped (see BrokerEvents). */
  clientDropping(client: ClientInfo, reason: 'queueFull' | 'memoryLimit'): void;
}
