import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { TlsOptions } from 'node:tls';
import { constants as cryptoConstants, X509Certificate } from 'node:crypto';

export interface TlsPaths {
  cert: string;
  key: string;
  ca?: string;
  /** ask for and verify a client certificate against `ca` (mutual TLS) */
  requireClientCert?: boolean;
  /** use a verified client certificate's subject CN as the MQTT username */
  certificateAsUsername?: boolean;
}

/**
 * Certificate, key and CA read from their files; `reload()` reads them again so a renewed
 * certificate is used for new handshakes without a restart.
 */
export class TlsFiles {
  readonly paths: TlsPaths;
  private cert: Buffer;
  private key: Buffer;
  private ca: Buffer | undefined;

  constructor(paths: TlsPaths) {
    this.paths = paths;
    this.cert = readTlsFile(paths.cert, 'certificate');
    this.key = readTlsFile(paths.key, 'key');
    this.ca = paths.ca === undefined ? undefined : readTlsFile(paths.ca, 'CA');
    if (paths.ca !== undefined && pemCertificates(this.ca as Buffer) === 0) throw new Error(noCaCertificate(paths.ca));
  }

  get requestCert(): boolean {
    return this.paths.requireClientCert === true;
  }

  get certificateAsUsername(): boolean {
    return this.paths.certificateAsUsername === true;
  }

  reload(): void {
    const next = new TlsFiles(this.paths);
    this.cert = next.cert;
    this.key = next.key;
    this.ca = next.ca;
  }

  /**
   * Calls `onChange` when one of the files changes on disk (a renewed certificate). Polling, not
   * inotify: certificate tools replace files by rename, which a watcher on the old inode misses.
   */
  watch(onChange: () => void, intervalMs = 2000): () => void {
    const files = [this.paths.cert, this.paths.key, ...(this.paths.ca === undefined ? [] : [this.paths.ca])];
    let pending: NodeJS.Timeout | undefined;
    const listener = (curr: Stats, prev: Stats): void => {
      if (curr.mtimeMs === prev.mtimeMs && curr.ino === prev.ino) return;
      // a renewal writes cert and key one after the other: wait for both
      if (pending !== undefined) clearTimeout(pending);
      pending = setTimeout(onChange, 200);
      pending.unref();
    };
    for (const f of files) watchFile(f, { interval: intervalMs, persistent: false }, listener);
    return () => {
      if (pending !== undefined) clearTimeout(pending);
      for (const f of files) unwatchFile(f, listener);
    };
  }

  serverOptions(): TlsOptions {
    return {
      cert: this.cert,
      key: this.key,
      ca: this.ca,
      minVersion: 'TLSv1.2',
      // a client may not renegotiate (TLS 1.2): each costs the broker a handshake's CPU, and Node
      // only reports a flood of them as an error on the socket, leaving the connection up
      secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
      requestCert: this.requestCert,
      rejectUnauthorized: this.requestCert,
    };
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The certificates a CA file holds in PEM that parse. Node takes a CA file with none (DER, a key,
 * an empty file) without a word, and then refuses every client certificate.
 */
export function pemCertificates(bytes: Buffer): number {
  let n = 0;
  for (const [block] of bytes.toString('latin1').matchAll(PEM_CERTIFICATE)) {
    try {
      void new X509Certificate(block);
      n++;
    } catch {
      // not a certificate after all: not counted
    }
  }
  return n;
}

export function noCaCertificate(path: string): string {
  return `TLS CA file ${path} holds no PEM certificate (a DER file converts with: openssl x509 -inform der -in FILE -out FILE.pem)`;
}

function readTlsFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read TLS ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}
