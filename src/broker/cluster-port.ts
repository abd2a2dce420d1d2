import type { Message } from '../session/message.js';
import type { MatchMemo } from '../topic/subscription-trie.js';

/**
 * What the broker asks of the cluster it is a node of. Without one, the broker is a single node
 * and none of this is consulted.
 */
export interface ClusterPort {
  /** Routes a message published on this node, here and to the nodes with matching subscribers; returns sessions reached here. */
  route(message: Message, memo: MatchMemo | undefined): number;
  /**
   * Settles once every message routed so far that went to other nodes is with Redis and no node
   * it went to is too far behind (undefined when none is on its way); rejects when one of this
   * turn's QoS 1/2 messages could not be forwarded. A QoS 1/2 publisher is acknowledged then, so
   * it cannot outrun the other nodes, and acknowledgements keep the order of the messages.
   */
  sent(): Promise<void> | undefined;
  /** Settles once Redis has every route change of this node so far, announced to the other nodes; undefined when none is on its way. */
  routesShared(): Promise<void> | undefined;
  /** A retained message was set, or cleared (empty payload), on this node: every node applies it. */
  retainedChanged(message: Message): void;
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
}
