import { Buffer } from 'node:buffer';
import type { QoS } from '../codec/packets.js';
import { isSysTopic } from '../topic/sys-topic.js';
import { HttpError, methodNotAllowed } from './http-error.js';
import type { AdminView, Page } from './view.js';

export interface ApiContext {
  view: AdminView;
  publish(options: { topic: string; payload: Buffer; qos: QoS; retain: boolean }): Promise<void>;
  /** the cluster this broker is a node of; undefined for a single node */
  cluster(): ClusterAdmin | undefined;
}

/** What the admin API asks of a cluster. */
export interface ClusterAdmin {
  readonly nodeId: string;
  describe(): Promise<unknown[]>;
  /** what gone nodes left in Redis and no node has sent or taken up yet */
  describeOrphans(): Promise<unknown[]>;
  ownerOf(clientId: string): Promise<string | null>;
}

export interface ApiResult {
  status: number;
  body: unknown;
}

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

/** What each method does on one path. */
type Handlers = Partial<Record<'GET' | 'POST' | 'DELETE', () => ApiResult | Promise<ApiResult>>>;

/**
 * The admin REST API, as plain functions of (method, path, query, body). `path` is as sent, each
 * level still percent-encoded; `body` reads and parses the request's body, asked for only once the
 * path and method are known to take one.
 */
export async function handleApi(ctx: ApiContext, method: string, path: string, query: URLSearchParams, body: () => Promise<unknown>): Promise<ApiResult> {
  const handlers = routeOf(ctx, path, query, body);
  const handler = Object.hasOwn(handlers, method) ? handlers[method as keyof Handlers] : undefined;
  if (handler === undefined) throw methodNotAllowed(method, `/api/v1${path}`, Object.keys(handlers));
  return handler();
}

/** The handlers of a path; a path no method is served on is a 404. */
function routeOf(ctx: ApiContext, path: string, query: URLSearchParams, body: () => Promise<unknown>): Handlers {
  const parts = path.split('/').filter((p) => p.length > 0).map(decodePart);
  const [collection, id, sub] = parts;
  const view = ctx.view;
  switch (collection) {
    case 'clients': {
      if (id === undefined) {
        return { GET: () => ok(view.clients(query.get('q'), ...pageArgs(query))) };
      }
      if (parts.length === 2) {
        return {
          GET: () => {
            const row = view.client(id);
            if (row === undefined) throw new HttpError(404, `no connected client "${id}"`);
            return ok(row);
          },
          DELETE: () => {
            if (!view.disconnect(id)) throw new HttpError(404, `no connected client "${id}"`);
            return ok({ disconnected: id });
          },
        };
      }
      if (sub === 'subscriptions' && parts.length === 3) {
        return {
          GET: () => {
            const subs = view.subscriptions(id);
            if (subs === undefined) throw new HttpError(404, `no session for client "${id}"`);
            return ok(page(subs, query));
          },
        };
      }
      break;
    }
    case 'sessions': {
      if (id === undefined) return { GET: () => ok(view.sessions(...pageArgs(query))) };
      if (parts.length === 2) {
        return {
          DELETE: () => {
            if (!view.deleteSession(id)) throw new HttpError(404, `no session for client "${id}"`);
            return ok({ deleted: id });
          },
        };
      }
      break;
    }
    case 'retained': {
      // the topic is the rest of the path, '/' and empty levels included
      const topic = decodePart(path.replace(/^\/*[^/]*\/?/, ''));
      if (topic === '') return { GET: () => ok(view.retained(...pageArgs(query))) };
      return {
        GET: () => {
          const row = view.retainedMessage(topic);
          if (row === undefined) throw new HttpError(404, `no retained message on "${topic}"`);
          return ok(row);
        },
        DELETE: () => {
          if (!view.deleteRetained(topic)) throw new HttpError(404, `no retained message on "${topic}"`);
          return ok({ deleted: topic });
        },
      };
    }
    case 'publish': {
      if (id !== undefined) break;
      return {
        POST: async () => {
          const msg = parsePublish(await body());
          try {
            await ctx.publish(msg);
          } catch (err) {
            throw new HttpError(400, (err as Error).message);
          }
          return { status: 202, body: { published: msg.topic } };
        },
      };
    }
    case 'cluster': {
      const cluster = ctx.cluster();
      if (cluster === undefined) throw new HttpError(404, 'this broker is not a node of a cluster (clusterRedis is not set)');
      if (id === undefined) {
        return {
          GET: async () => {
            const [nodes, orphans] = await Promise.all([cluster.describe(), cluster.describeOrphans()]);
            return ok({ nodeId: cluster.nodeId, nodes, orphans });
          },
        };
      }
      // which node holds a client id, wherever it is connected
      if (id === 'clients' && sub !== undefined && parts.length === 3) {
        return {
          GET: async () => {
            const node = await cluster.ownerOf(sub);
            if (node === null) throw new HttpError(404, `no node holds client "${sub}"`);
            return ok({ clientId: sub, node });
          },
        };
      }
      break;
    }
    default:
      throw new HttpError(404, `no such resource: ${collection ?? '(none)'}`);
  }
  throw new HttpError(404, `no such resource: /api/v1${path}`);
}

/** A path segment as the client meant it: percent-encoding that is not UTF-8 is the client's mistake. */
function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HttpError(400, `bad percent-encoding in the path: "${part}" is not URL-encoded UTF-8`);
  }
}

function ok(body: unknown): ApiResult {
  return { status: 200, body };
}

/** The page a listing asks for: `offset` and `limit` (1 to 1,000, 100 by default). */
function pageWindow(query: QueryLike): { offset: number; limit: number } {
  return {
    limit: intParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT),
    offset: intParam(query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER),
  };
}

function pageArgs(query: QueryLike): [offset: number, limit: number] {
  const { offset, limit } = pageWindow(query);
  return [offset, limit];
}

function page<T>(rows: T[], query: QueryLike): Page<T> {
  const { offset, limit } = pageWindow(query);
  return { total: rows.length, offset, limit, items: rows.slice(offset, offset + limit) };
}

interface QueryLike {
  get(name: string): string | null;
}

function intParam(query: QueryLike, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null) return fallback;
  // decimal digits only: Number() would also take "1e2", "0x10" and " 10"
  const n = /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) throw new HttpError(400, `${name} must be an integer between ${min} and ${max} (got "${raw}")`);
  return n;
}

function parsePublish(body: unknown): { topic: string; payload: Buffer; qos: QoS; retain: boolean } {
  if (typeof body !== 'object' || body === null) throw new HttpError(400, 'body must be a JSON object with "topic" and "payload"');
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (!['topic', 'payload', 'encoding', 'qos', 'retain'].includes(key)) throw new HttpError(400, `unknown field "${key}"`);
  }
  if (typeof b.topic !== 'string' || b.topic.length === 0) throw new HttpError(400, '"topic" must be a non-empty string');
  // as for a client's PUBLISH: a message there would forge the broker's own figures, or, retained,
  // stand in for one of them until the next $SYS update. Other `$` topics are the clients' to use
  if (isSysTopic(b.topic)) throw new HttpError(400, `"topic" may not be a $SYS topic (got "${b.topic}"): those are the broker's own`);
  if (typeof b.payload !== 'string') throw new HttpError(400, '"payload" must be a string');
  const encoding = b.encoding ?? 'utf8';
  if (encoding !== 'utf8' && encoding !== 'base64') throw new HttpError(400, '"encoding" must be "utf8" or "base64"');
  const qos = b.qos ?? 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new HttpError(400, '"qos" must be 0, 1 or 2');
  const retain = b.retain ?? false;
  if (typeof retain !== 'boolean') throw new HttpError(400, '"retain" must be true or false');
  return { topic: b.topic, payload: encoding === 'base64' ? base64Payload(b.payload) : Buffer.from(b.payload, 'utf8'), qos, retain };
}

/**
 * Standard base64 (RFC 4648 section 4) with its padding, as Buffer#toString('base64') writes it.
 * Buffer.from skips what is not base64, so that a typo would publish other bytes, or none: an empty
 * retained message, which deletes the one on the topic. base64url and unpadded text are refused
 * too, rather than guessed at.
 */
function base64Payload(text: string): Buffer {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.toString('base64') !== text) {
    throw new HttpError(400, '"payload" is not base64 (A-Z, a-z, 0-9, "+" and "/", padded with "=" to a multiple of 4 characters)');
  }
  return bytes;
}
