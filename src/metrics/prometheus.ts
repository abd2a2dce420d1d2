import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { StatsSnapshot } from '../broker/stats.js';

/**
 * Prometheus metrics read from the broker's counters when scraped: the message path pays
 * nothing for them. Event-loop lag, heap and GC come from prom-client's default collectors.
 */
export class BrokerMetrics {
  readonly registry = new Registry();
  /** persistence group-commit latency, observed by the store wiring */
  readonly commitSeconds: Histogram;

  constructor(snapshot: () => StatsSnapshot) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'midge_process_' });
    let current: StatsSnapshot | undefined;
    // one snapshot per scrape, shared by every metric below
    const stats = (): StatsSnapshot => (current ??= snapshot());
    const gauge = (name: string, help: string, read: (s: StatsSnapshot) => number): void => {
      new Gauge({ name, help, registers: [r], collect() { this.set(read(stats())); } });
    };
    new Gauge({
      name: 'midge_scrape_marker',
      help: 'Always 1; resets the per-scrape snapshot',
      registers: [r],
      collect() {
        current = undefined;
        this.set(1);
      },
    });
    gauge('midge_connections', 'Clients connected now', (s) => s.clientsConnected);
    gauge('midge_connections_maximum', 'Most clients connected at once since start', (s) => s.clientsMaximum);
    gauge('midge_sessions', 'Sessions held (connected and persistent offline)', (s) => s.sessions);
    gauge('midge_sessions_offline', 'Persistent sessions whose client is offline', (s) => s.clientsDisconnected);
    gauge('midge_subscriptions', 'Subscriptions held', (s) => s.subscriptions);
    gauge('midge_retained_messages', 'Retained messages stored', (s) => s.retained);
    gauge('midge_inflight_messages', 'QoS 1/2 messages sent and not yet acknowledged', (s) => s.inflight);
    gauge('midge_queued_messages', 'Messages waiting in session queues', (s) => s.queued);
    gauge('midge_queued_bytes', 'Payload bytes of the messages waiting in session queues', (s) => s.queuedBytes);
    gauge('midge_memory_limit_reached', '1 while the broker is over limits.maxMemory and takes on nothing more', (s) => (s.memoryLimitReached ? 1 : 0));
    const byQos = (name: string, help: string, read: (s: StatsSnapshot) => number[]): void => {
      new Counter({
        name,
        help,
        labelNames: ['qos'],
        registers: [r],
        collect() {
          this.reset();
          read(stats()).forEach((v, qos) => this.inc({ qos: String(qos) }, v));
        },
      });
    };
    byQos('midge_messages_received_total', 'PUBLISH messages accepted, by QoS', (s) => s.messagesReceivedByQos);
    byQos('midge_messages_sent_total', 'PUBLISH packets sent to clients, by QoS', (s) => s.messagesSentByQos);
    new Counter({
      name: 'midge_messages_dropped_total',
      help: 'Deliveries not made, by reason',
      labelNames: ['reason'],
      registers: [r],
      collect() {
        this.reset();
        for (const [reason, v] of Object.entries(stats().droppedByReason)) this.inc({ reason }, v);
      },
    });
    const total = (name: string, help: string, read: (s: StatsSnapshot) => number): void => {
      new Counter({ name, help, registers: [r], collect() { this.reset(); this.inc(read(stats())); } });
    };
    total('midge_bytes_received_total', 'Bytes read from clients', (s) => s.bytesReceived);
    total('midge_bytes_sent_total', 'Bytes written to clients', (s) => s.bytesSent);
    if (stats().cluster !== undefined) {
      gauge('midge_cluster_nodes', 'Nodes of the cluster alive, this one included', (s) => s.cluster?.nodes ?? 0);
      total('midge_cluster_messages_forwarded_total', 'Messages sent to other nodes (one per node)', (s) => s.cluster?.forwarded ?? 0);
      total('midge_cluster_messages_received_total', 'Messages other nodes sent here', (s) => s.cluster?.received ?? 0);
      total('midge_cluster_forward_failures_total', 'Messages not sent to a node because Redis could not take them', (s) => s.cluster?.forwardFailed ?? 0);
      total('midge_cluster_forwards_dropped_total', 'QoS 0 messages not sent to a node whose inbox held more than clusterMaxBacklog, or whose publisher had 1 MB waiting for a commit behind its persistent QoS 2 message (its retained change is shared all the same)', (s) => s.cluster?.forwardDropped ?? 0);
      total('midge_cluster_replica_waits_failed_total', 'Turns of QoS 1/2 messages not acknowledged because fewer Redis replicas than clusterWaitReplicas had them in time', (s) => s.cluster?.replicaWaitsFailed ?? 0);
      total('midge_cluster_backlog_waits_total', 'Times QoS 1/2 acknowledgements waited for a node to work off its inbox', (s) => s.cluster?.backlogWaits ?? 0);
      total('midge_cluster_sessions_taken_over_total', 'Sessions moved here from other nodes with their clients', (s) => s.cluster?.sessionsTakenOver ?? 0);
      total('midge_cluster_sessions_resumed_from_redis_total', 'Sessions resumed here from what Redis kept of them (their node gone, or not handing them over in time)', (s) => s.cluster?.sessionsResumedFromRedis ?? 0);
      total('midge_cluster_orphan_sessions_adopted_total', 'Sessions of gone nodes whose clients had not come back, taken up here to wait offline', (s) => s.cluster?.orphanSessionsAdopted ?? 0);
      total('midge_cluster_gone_inbox_messages_total', 'Messages left in the inboxes of gone nodes that reached sessions taken from them here', (s) => s.cluster?.goneInboxMessages ?? 0);
      total('midge_cluster_shared_redispatched_total', 'Shared-subscription messages left in the inboxes of gone nodes that this node gave to the groups\' other members', (s) => s.cluster?.sharedRedispatched ?? 0);
      total('midge_cluster_orphan_wills_sent_total', 'Wills of clients of gone nodes (died or stopped) published by this node', (s) => s.cluster?.orphanWillsSent ?? 0);
    }
    this.commitSeconds = new Histogram({
      name: 'midge_store_commit_seconds',
      help: 'Persistence group-commit latency',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [r],
    });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
