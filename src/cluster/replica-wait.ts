import type { Logger } from 'pino';
import { connectionForSlot, type RedisClient } from './redis-target.js';

/** how long a turn's acknowledgements wait for Redis replicas before they are refused */
const WAIT_MS = 1000;

/**
 * Waiting for Redis replicas to have this node's writes (clusterWaitReplicas), so that a QoS 1/2
 * publisher is acknowledged only once a failover could not lose its message. Redis WAIT counts
 * the writes of the connection it is sent on: in a Redis Cluster, that is the connection to the
 * master of the slot every key of the cluster is in.
 */
export class ReplicaWait {
  private readonly conn: RedisClient;
  private readonly replicas: number;
  private slot = 0;

  constructor(conn: RedisClient, replicas: number) {
    this.conn = conn;
    this.replicas = replicas;
  }

  /** Finds the slot of the cluster's keys (`key` is one); says when the master has fewer replicas than are waited for (all would be refused). */
  async start(key: string, logger: Logger): Promise<void> {
    if (this.conn.isCluster) this.slot = Number(await this.conn.call('CLUSTER', 'KEYSLOT', key));
    const info = await connectionForSlot(this.conn, this.slot)?.info('replication');
    const replicas = Number(/connected_slaves:(\d+)/.exec(info ?? '')?.[1] ?? 0);
    if (replicas < this.replicas) logger.warn({ replicas, clusterWaitReplicas: this.replicas }, 'cluster: the Redis master has fewer replicas than clusterWaitReplicas; QoS 1/2 messages for other nodes are not acknowledged until it has them');
  }

  /** Whether the replicas have every write of this node so far (within WAIT_MS). */
  async replicated(): Promise<boolean> {
    const conn = connectionForSlot(this.conn, this.slot);
    if (conn === undefined) return false;
    try {
      return ((await conn.call('WAIT', this.replicas, WAIT_MS)) as number) >= this.replicas;
    } catch {
      return false;
    }
  }
}
