import { Buffer } from 'node:buffer';
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BrokerMetrics } from '../metrics/prometheus.js';
import { HttpError, methodNotAllowed } from './http-error.js';
import { handleApi, type ApiContext } from './routes.js';

export interface HttpOptions {
  host: string;
  port: number;
  /** admin API off unless a token is set */
  adminToken: string | undefined;
  metrics: BrokerMetrics;
  ready(): boolean;
  api: ApiContext;
}

const MAX_BODY = 1024 * 1024;

/**
 * The operations endpoint: Prometheus metrics, health and readiness probes, and the admin REST
 * API under /api/v1 (bearer token, off unless configured). Bound to loopback unless told otherwise.
 */
export class HttpEndpoint {
  private readonly server: Server;

  constructor(private readonly options: HttpOptions) {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (err instanceof HttpError) return sendJson(res, err.status, { error: err.message }, err.headers);
        sendJson(res, 500, { error: 'internal error' });
        // a 500 is a bug of ours: the client learns nothing from it, so the operator must
        this.options.api.view.reportFault(err, `answering HTTP ${req.method ?? '?'} ${pathOf(req)}`);
      });
    });
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    let url: URL;
    try {
      url = new URL(target, 'http://localhost');
    } catch {
      throw new HttpError(400, 'the request target is not a valid URL');
    }
    const path = rawPathOf(target);
    const probe = this.probes.get(path);
    if (probe !== undefined) {
      // HEAD too: load balancers probe with it, and Node sends the headers without the body
      if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotAllowed(req.method ?? '?', path, ['GET', 'HEAD']);
      return probe(res);
    }
    if (path === '/api/v1' || path.startsWith('/api/v1/')) {
      this.authorize(req);
      // read by the handler that takes a body: an unknown path or method is said to be one, whatever the body
      const result = await handleApi(this.options.api, req.method ?? 'GET', path.slice('/api/v1'.length), url.searchParams, () => readJson(req));
      return sendJson(res, result.status, result.body);
    }
    throw new HttpError(404, `no such endpoint: ${req.method} ${path}`);
  }

  private readonly probes = new Map<string, (res: ServerResponse) => Promise<void> | void>([
    [
      '/metrics',
      async (res) => {
        const text = await this.options.metrics.text();
        res.writeHead(200, { 'content-type': this.options.metrics.contentType }).end(text);
      },
    ],
    ['/healthz', (res) => sendJson(res, 200, { status: 'ok' })],
    [
      '/readyz',
      (res) => {
        const ready = this.options.ready();
        sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
      },
    ],
  ]);

  private authorize(req: IncomingMessage): void {
    const token = this.options.adminToken;
    if (token === undefined || token === '') throw new HttpError(404, 'the admin API is off (set an admin token to enable it)');
    // the scheme's name is case-insensitive (RFC 9110 11.1), and one or more spaces end it
    const scheme = /^bearer +/i.exec(req.headers.authorization ?? '');
    const given = Buffer.from(scheme === null ? '' : (req.headers.authorization as string).slice(scheme[0].length));
    const expected = Buffer.from(token);
    // constant time whatever the length of the guess
    const ok = given.length === expected.length && timingSafeEqual(given, expected);
    if (!ok) throw new HttpError(401, 'missing or wrong bearer token');
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { ...headers, 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
}

/**
 * The path as the client sent it, before any query. Not a URL's pathname: that resolves `.` and
 * `..` segments, which under /api/v1/retained are levels of a topic, so that a request would act on
 * another topic, or another resource, than the one it names. An absolute-form target (a proxy's)
 * gives its path.
 */
function rawPathOf(target: string): string {
  const path = target.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/, '');
  const end = path.search(/[?#]/);
  const before = end === -1 ? path : path.slice(0, end);
  return before.startsWith('/') ? before : `/${before}`;
}

/** The path alone for the log: never the query, whatever a client put there. */
function pathOf(req: IncomingMessage): string {
  const target = req.url ?? '/';
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}
