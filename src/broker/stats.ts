import type { TransportStats } from '../transport/connection.js';
import type { BrokerCore } from './broker-core.js';

/** A point-in-time view of the broker's numbers, shared by $SYS, metrics and the embedding API. */
export interface StatsSnapshot {
  clientsConnected: number;
  /** persistent sessions whose client is offline */
  clientsDisconnected: number;
  clientsMaximum: number;
  sessions: number;
  subscriptions: number;
  /** retained messages the clients' limit counts: the broker's own $SYS ones are not among them */
  retained: number;
  /** messages held for clients: queued plus inflight */
  messagesStored: number;
  inflight: number;
  queued: number;
  /** payload bytes of the queued messages */
  queuedBytes: number;
  messagesReceived: number;
  messagesReceivedByQos: [number, number, number];
  messagesSent: number;
  messagesSentByQos: [number, number, number];
  messagesDropped: number;
  droppedByReason: Record<string, number>;
  /** publishes that went over their client's publish rate (the client was slowed down) */
  publishesThrottled: number;
  /** retained messages not stored because the retained limit was reached */
  retainedRefused: number;
  /** the broker is over its memory bound (`limits.maxMemory`, or 85% of the heap limit) and takes on nothing more */
  memoryLimitReached: boolean;
  bytesReceived: number;
  bytesSent: number;
  /** MQTT packets of every kind received and sent */
  packetsReceived: number;
  packetsSent: number;
  /** this node's view of its cluster; undefined for a single node */
  cluster: ClusterCounts | undefined;
}

/** What a cluster node knows of its cluster. */
export interface ClusterCounts {
  nodeId: string;
  /** nodes alive, this one included */
  nodes: number;
  /** (node, filter) routes of the other nodes known here */
  remoteRoutes: number;
  /** messages sent to other nodes, one per node */
  forwarded: number;
  /** messages other nodes sent here */
  received: number;
  /** messages not sent to a node because Redis could not take them */
  forwardFailed: number;
  /** QoS 0 messages not sent to a node whose inbox was full, or held past 1 MB behind a commit (as are QoS 0 retained changes then, once a node) */
  forwardDropped: number;
  /** times QoS 1/2 acknowledgements waited for a node to work off its inbox */
  backlogWaits: number;
  /** turns of QoS 1/2 messages not acknowledged because fewer Redis replicas than clusterWaitReplicas had them in time */
  replicaWaitsFailed: number;
  /** sessions handed to other nodes / taken from them */
  sessionsHandedOver: number;
  sessionsTakenOver: number;
  /** wills of clients of nodes that were gone (died or stopped) that this node published */
  orphanWillsSent: number;
  /** sessions resumed here from what Redis kept of them, their node being gone or not answering */
  sessionsResumedFromRedis: number;
  /** sessions of gone nodes whose clients had not come back, taken up here to wait offline */
  orphanSessionsAdopted: number;
  /** messages left in the inboxes of gone nodes that reached sessions taken from them here */
  goneInboxMessages: number;
  /** shared-subscription messages left in the inboxes of gone nodes, given here to their groups' other members */
  sharedRedispatched: number;
  /** sessions handed to another node and still here a moment, to send on what reached only them: not this node's any more */
  sessionsLeaving: number;
}

export function statsSnapshot(core: BrokerCore, transport: TransportStats, cluster?: ClusterCounts): StatsSnapshot {
  const { inflight, queued, queuedBytes } = core.sessions.totals;
  const c = core.counters;
  const dropped = { ...c.dropped };
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  const leaving = cluster?.sessionsLeaving ?? 0;
  return {
    clientsConnected: core.connected,
    clientsDisconnected: core.sessions.size - leaving - core.sessions.online,
    clientsMaximum: core.maxConnected,
    sessions: core.sessions.size - leaving,
    subscriptions: core.router.subscriptionCount,
    retained: core.retained.clientCount,
    messagesStored: inflight + queued,
    inflight,
    queued,
    queuedBytes,
    messagesReceived: sum(c.received),
    messagesReceivedByQos: [...c.received],
    messagesSent: sum(c.sent),
    messagesSentByQos: [...c.sent],
    messagesDropped: sum(Object.values(dropped)),
    droppedByReason: dropped,
    publishesThrottled: c.throttled,
    retainedRefused: c.retainedRefused,
    memoryLimitReached: core.memoryFull,
    bytesReceived: transport.bytesReceived,
    bytesSent: transport.bytesSent,
    packetsReceived: transport.packetsReceived,
    packetsSent: transport.packetsSent,
    cluster,
  };
}
