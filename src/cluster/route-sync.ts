import { publishOn, type RedisClient } from './redis-target.js';
import type { Logger } from 'pino';
import type { RouteObserver } from '../broker/router.js';
import type { RouteIndex } from './route-index.js';

/**
 * This node's routes in Redis, and the other nodes' in the route index. Each node keeps its filters
 * in a set of its own (`routes:<node>`) and announces each first and last subscriber of a filter
 * on the `routes` channel, in the same transaction.
 */
export class RouteSync implements RouteObserver {
  /** set once the node has joined: changes before that are in the set it registers */
  joined = false;
  /** set as the node leaves: its set goes at once, so removals are not announced one by one */
  leaving = false;
  private readonly cmd: RedisClient;
  private readonly index: RouteIndex;
  private readonly nodeId: string;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly isLive: (node: string) => boolean;
  /** a session moved from `previous` to the node that announced it */
  private readonly onMove: (previous: string, clientId: string) => void;
  /** the route change sent to Redis last, until Redis has it */
  private lastAnnounce: Promise<void> | undefined;

  constructor(cmd: RedisClient, index: RouteIndex, prefix: string, logger: Logger, isLive: (node: string) => boolean, onMove: (previous: string, clientId: string) => void) {
    this.cmd = cmd;
    this.index = index;
    this.nodeId = index.self;
    this.prefix = prefix;
    this.logger = logger;
    this.isLive = isLive;
    this.onMove = onMove;
  }

  added(filter: string): void {
    this.index.add(this.nodeId, filter);
    if (this.joined) this.announce('+', filter);
  }

  removed(filter: string): void {
    this.index.remove(this.nodeId, filter);
    if (this.joined && !this.leaving) this.announce('-', filter);
  }

  /** Settles once Redis has every route change of this node so far, announced; undefined when none is on its way. */
  shared(): Promise<void> | undefined {
    return this.lastAnnounce;
  }

  /** Registers this node's filters anew (joining, or after Redis dropped them) and says it is up. */
  async publishOwn(filters: string[]): Promise<void> {
    const key = `${this.prefix}:routes:${this.nodeId}`;
    const tx = this.cmd.multi().del(key);
    for (let i = 0; i < filters.length; i += 1000) tx.sadd(key, ...filters.slice(i, i + 1000));
    await publishOn(this.cmd, tx, `${this.prefix}:nodes`, `up ${this.nodeId}`).exec();
  }

  /** The filters of each node, as Redis holds them now. */
  read(nodes: string[]): Promise<string[][]> {
    return Promise.all(nodes.map((n) => this.cmd.smembers(`${this.prefix}:routes:${n}`)));
  }

  /** Reads a node's routes into the index, unless it has gone meanwhile. */
  load(node: string): void {
    void this.read([node]).then(
      ([filters]) => {
        if (this.isLive(node)) this.index.replaceNode(node, filters as string[]);
      },
      () => undefined,
    );
  }

  /**
   * A session moved here from `previous`: the other nodes are asked, behind this node's route
   * changes so far on the same channel (so once they know them), to say so to `previous`.
   */
  announceMove(previous: string, clientId: string): void {
    publishOn(this.cmd, this.cmd, `${this.prefix}:routes`, `M${this.nodeId}\n${previous}\n${clientId}`).catch((err: Error) => this.logger.warn({ err: err.message, clientId }, 'cluster: session move not announced'));
  }

  /** A message on the `routes` channel: `+<node>\n<filter>`, `-<node>\n<filter>` or `M<node>\n<previous node>\n<client id>`. */
  changed(text: string): void {
    const nl = text.indexOf('\n');
    const node = text.slice(1, nl);
    if (node === this.nodeId || nl < 0) return;
    const rest = text.slice(nl + 1);
    if (text[0] === '+') this.index.add(node, rest);
    else if (text[0] === '-') this.index.remove(node, rest);
    else if (text[0] === 'M') {
      const at = rest.indexOf('\n');
      if (at > 0) this.onMove(rest.slice(0, at), rest.slice(at + 1));
    }
  }

  private announce(op: '+' | '-', filter: string): void {
    const key = `${this.prefix}:routes:${this.nodeId}`;
    const tx = this.cmd.multi();
    if (op === '+') tx.sadd(key, filter);
    else tx.srem(key, filter);
    // Redis answers in order: the latest announcement done means all before it are
    const shared: Promise<void> = publishOn(this.cmd, tx, `${this.prefix}:routes`, `${op}${this.nodeId}\n${filter}`)
      .exec()
      .then(
        () => undefined,
        // the next sync announces it again
        (err: Error) => void this.logger.warn({ err: err.message, filter }, 'cluster: route change not shared'),
      )
      .then(() => {
        if (this.lastAnnounce === shared) this.lastAnnounce = undefined;
      });
    this.lastAnnounce = shared;
  }
}
