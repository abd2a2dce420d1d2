import { Buffer } from 'node:buffer';
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BrokerMetrics } from '../metrics/prometheus.js';
import { HttpError } from './http-error.js';
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
        const status = err instanceof HttpError ? err.status : 500;
        const message = err instanceof HttpError ? err.message : 'internal error';
        sendJson(res, status, { error: message });
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
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path === '/metrics' && req.method === 'GET') {
      const text = await this.options.metrics.text();
      res.writeHead(200, { 'content-type': this.options.metrics.contentType }).end(text);
      return;
    }
    if (path === '/healthz' && req.method === 'GET') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz' && req.method === 'GET') {
      const ready = this.options.ready();
      return sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
    }
    if (path === '/api/v1' || path.startsWith('/api/v1/')) {
      this.authorize(req);
      const body = req.method === 'POST' || req.method === 'PUT' ? await readJson(req) : undefined;
      const result = await handleApi(this.options.api, req.method ?? 'GET', path.slice('/api/v1'.length), url.searchParams, body);
      return sendJson(res, result.status, result.body);
    }
    throw new HttpError(404, `no such endpoint: ${req.method} ${path}`);
  }

  private authorize(req: IncomingMessage): void {
    const token = this.options.adminToken;
    if (token === undefined || token === '') throw new HttpError(404, 'the admin API is off (set an admin token to enable it)');
    const header = req.headers.authorization ?? '';
    const given = Buffer.from(header.startsWith('Bearer ') ? header.slice(7) : '');
    const expected = Buffer.from(token);
    // constant time whatever the length of the guess
    const ok = given.length === expected.length && timingSafeEqual(given, expected);
    if (!ok) throw new HttpError(401, 'missing or wrong bearer token');
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
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
