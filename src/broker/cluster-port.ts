import type { Will } from '../codec/packets.js';
import type { ClientInfo } from '../hooks/types.js';
import type { Delivery, Message } from '../session/message.js';
import type { Session } from '../session/session.js';
import type { MatchMemo } from '../topic/subscription-trie.js';
import type { RetainedStore } from './retained-store.js';
import type { Router, SharedSelector } from './router.js';
import type { SessionRegistry } from './session-registry.js';
import type { WillScheduler } from './wills.js';

/**
 * What the broker asks of the cluster it is a node of. Without one, the broker is a single node
 * and none of this is consulted.
 */
export interface ClusterPort {
  /**
   * Routes a message published on this node, here and to the nodes with matching subscribers;
   * returns sessions reached here. `stored`, for a QoS 2 message whose deliveries here wait for
   * the commit that records it, is called once it is routed here and gives that commit: the
   * message goes to the other nodes once it is over, and its publisher's later messages behind it.
   */
  route(message: Message, memo: MatchMemo | undefined, stored?: () => Promise<void> | undefined): number;
  /**
   * A message a departing member of the shared group `$share/{group}/{topicFilter}` held, which
   * no other member on this node took: it goes to one other node with a member of that group, for
   * that group alone (5.0 section 4.8.2). Says whether one had a member to take it.
   */
  handOverShared(message: Message, topicFilter: string, group: string): boolean;
  /**
   * Settles once every message routed so far that went to other nodes, and every QoS 1/2 retained
   * message set, is with Redis and no node it went to is too far behind (undefined when none is on
   * its way); rejects when one of this turn's QoS 1/2 messages could not be forwarded or shared.
   * A QoS 1/2 publisher is acknowledged then, so it cannot outrun the other nodes, and
   * acknowledgements keep the order of the messages. With `publisher`, that client's messages and
   * retained changes kept back behind a commit (see route) are waited for too.
   */
  sent(publisher?: string): Promise<void> | undefined;
  /** Settles once Redis has every route change of this node so far, announced to the other nodes; undefined when none is on its way. */
  routesShared(): Promise<void> | undefined;
  /**
   * A retained message was set, or cleared (empty payload), on this node: every node applies it.
   * `stored` is as for route (called after it): the other nodes apply it once that commit is over,
   * and its publisher's writes kept back before it first, unless a later change of the topic made
   * on this node meanwhile replaced it (they then never see it).
   */
  retainedChanged(message: Message, stored?: () => Promise<void> | undefined): void;
  /** A retained message was removed here by administration. */
  retainedDeleted(topic: string): void;
  /**
   * A client is connecting here: this node takes its client id, and another node still holding
   * its connection or session gives them up (the session moves here unless `cleanStart`).
   * Undefined when there is nothing to wait for.
   */
  claim(clientId: string, cleanStart: boolean): Promise<void> | undefined;
  /** The client's session ended here: the client id is no longer this node's. */
  sessionEnded(clientId: string): void;
  /** The session was opened, went offline, or its subscriptions changed: what the other nodes keep of it is written again. */
  sessionChanged(clientId: string): void;
  /**
   * Whether the client's session here was handed to another node and stays only a moment, to send
   * on what reached it here: it is that node's now, so it is neither counted nor listed here.
   */
  leaving(clientId: string): boolean;
  /**
   * A client connected here with a will (due `afterS` seconds after the connection is lost): the
   * other nodes send it should this node die with the connection.
   */
  willArmed(owner: object, client: ClientInfo, will: Will, afterS: number): void;
  /** `owner`'s connection ended: its will was sent, dropped, or waits out its delay (willPending). */
  willDisarmed(owner: object, clientId: string): void;
  /** A will waits here, with no connection, until `fireAt`. */
  willPending(client: ClientInfo, will: Will, fireAt: number): void;
  /** The waiting will was sent, or its client came back in time. */
  willDone(clientId: string): void;
}

/** What the cluster asks of the broker whose node it is. */
export interface ClusterHost {
  now(): number;
  /** set while the node is in the cluster */
  cluster: ClusterPort | undefined;
  readonly router: Pick<Router, 'route' | 'add' | 'observe' | 'filters'>;
  readonly sessions: Pick<SessionRegistry, 'get' | 'end' | 'values' | 'restore' | 'totals'>;
  readonly wills: Pick<WillScheduler, 'fire' | 'cancel' | 'scheduleAt'>;
  /** A session this node takes up offline (its node gone): written to the store, as one opened here would be. */
  keep(session: Session): void;
  readonly retained: Pick<RetainedStore, 'values'>;
  /**
   * A message another node routed here: to this node's subscribers, and to the shared groups
   * `shared` accepts; with `only`, direct subscriptions are those of the sessions it accepts.
   * Returns how many sessions it reached.
   */
  routeRemote(message: Message, shared: SharedSelector, only?: (session: Session) => boolean): number;
  /** Publishes a client's will as the broker does when its connection is lost (its ACL applies); says whether the ACL let it through. */
  publishWill(client: ClientInfo, will: Will): boolean | Promise<boolean>;
  /** a fault met by work no client's input started: logged, and the node goes on */
  reportFault(err: unknown, task: string): void;
  /** A retained message set (undefined: cleared) on another node. */
  applyRemoteRetained(topic: string, message: Message | undefined): void;
  /** A delivery made elsewhere (another node had the session), given to the session as if routed here. */
  deliver(session: Session, d: Delivery): void;
}
