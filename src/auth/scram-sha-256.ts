import { Buffer } from 'node:buffer';
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { AuthConversation, AuthOutcome, EnhancedAuthenticator } from '../hooks/authenticator.js';
import type { MaybePromise } from '../hooks/types.js';

const pbkdf2Async = promisify(pbkdf2);

/** What the server keeps per user (RFC 5802 section 3): never the password itself. */
export interface ScramCredentials {
  readonly salt: Buffer;
  readonly iterations: number;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

export type ScramLookup = (username: string) => MaybePromise<ScramCredentials | undefined>;

export interface ScramOptions {
  /** users by name: plain passwords (derived once at start) or precomputed credentials */
  users?: Record<string, string | ScramCredentials>;
  /** or a lookup, e.g. into a database */
  lookup?: ScramLookup;
  /** RFC 7677 asks for at least 4096 */
  iterations?: number;
}

/** Derives the stored form of a password (RFC 5802 SaltedPassword, StoredKey, ServerKey). */
export async function scramCredentials(password: string, iterations = 4096, salt: Buffer = randomBytes(16)): Promise<ScramCredentials> {
  const salted = await pbkdf2Async(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { salt, iterations, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** SCRAM-SHA-256 (RFC 7677) over the MQTT 5 AUTH exchange. */
export function scramSha256(options: ScramOptions): EnhancedAuthenticator {
  const iterations = options.iterations ?? 4096;
  const derived = new Map<string, Promise<ScramCredentials>>();
  for (const [name, v] of Object.entries(options.users ?? {})) {
    derived.set(name, typeof v === 'string' ? scramCredentials(v, iterations) : Promise.resolve(v));
  }
  // Unknown users get a stable fake salt so their exchange looks like a real one ([RFC 5802] 9).
  const secret = randomBytes(32);
  const lookup = async (name: string): Promise<ScramCredentials | undefined> => {
    const known = derived.get(name);
    if (known !== undefined) return known;
    return options.lookup === undefined ? undefined : options.lookup(name);
  };
  return {
    method: 'SCRAM-SHA-256',
    start: () => new ScramConversation(lookup, (name) => hmac(secret, name).subarray(0, 16), iterations),
  };
}

type Phase = 'first' | 'final' | 'done';

class ScramConversation implements AuthConversation {
  private phase: Phase = 'first';
  private username = '';
  private credentials: ScramCredentials | undefined;
  private nonce = '';
  private gs2Header = '';
  private clientFirstBare = '';
  private serverFirst = '';

  constructor(
    private readonly lookup: (name: string) => Promise<ScramCredentials | undefined>,
    private readonly fakeSalt: (name: string) => Buffer,
    private readonly iterations: number,
  ) {}

  step(data: Buffer | undefined): Promise<AuthOutcome> | AuthOutcome {
    if (data === undefined) return fail('SCRAM data missing');
    const text = data.toString('utf8');
    if (this.phase === 'first') return this.first(text);
    if (this.phase === 'final') return this.final(text);
    return fail('SCRAM exchange already finished');
  }

  private async first(message: string): Promise<AuthOutcome> {
    // gs2-header: "n,," or "y,," (no channel binding here), optional "a=authzid"
    const m = /^([ny]),(a=[^,]*)?,(.*)$/s.exec(message);
    if (m === null) return fail('malformed SCRAM client-first-message (channel binding is not supported)');
    this.gs2Header = `${m[1]},${m[2] ?? ''},`;
    this.clientFirstBare = m[3] as string;
    const attrs = parseAttributes(this.clientFirstBare);
    const name = attrs.get('n');
    const clientNonce = attrs.get('r');
    if (attrs.has('m') || name === undefined || clientNonce === undefined || clientNonce.length === 0) {
      return fail('malformed SCRAM client-first-message');
    }
    const username = decodeSaslName(name);
    if (username === undefined) return fail('malformed SCRAM username');
    this.username = username;
    this.credentials = await this.lookup(username);
    const salt = this.credentials?.salt ?? this.fakeSalt(username);
    const iterations = this.credentials?.iterations ?? this.iterations;
    this.nonce = clientNonce + randomBytes(18).toString('base64');
    this.serverFirst = `r=${this.nonce},s=${salt.toString('base64')},i=${iterations}`;
    this.phase = 'final';
    return { kind: 'continue', data: Buffer.from(this.serverFirst) };
  }

  private final(message: string): AuthOutcome {
    this.phase = 'done';
    const proofAt = message.lastIndexOf(',p=');
    if (proofAt < 0) return fail('malformed SCRAM client-final-message');
    const withoutProof = message.slice(0, proofAt);
    const attrs = parseAttributes(withoutProof);
    if (attrs.get('c') !== Buffer.from(this.gs2Header).toString('base64')) return fail('SCRAM channel binding mismatch');
    if (attrs.get('r') !== this.nonce) return fail('SCRAM nonce mismatch');
    const creds = this.credentials;
    if (creds === undefined) return fail('unknown user');
    const proof = Buffer.from(message.slice(proofAt + 3), 'base64');
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const clientSignature = hmac(creds.storedKey, authMessage);
    if (proof.length !== clientSignature.length) return fail('bad SCRAM proof');
    const clientKey = xor(proof, clientSignature);
    if (!timingSafeEqual(sha256(clientKey), creds.storedKey)) return fail('bad credentials');
    const serverSignature = hmac(creds.serverKey, authMessage);
    return { kind: 'success', data: Buffer.from(`v=${serverSignature.toString('base64')}`), username: this.username };
  }
}

function fail(reason: string): AuthOutcome {
  return { kind: 'failure', reason };
}

function parseAttributes(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(',')) {
    if (part.length < 2 || part[1] !== '=') continue;
    out.set(part[0] as string, part.slice(2));
  }
  return out;
}

/** saslname: "=2C" stands for ',' and "=3D" for '='; any other '=' is malformed. */
function decodeSaslName(name: string): string | undefined {
  if (/=(?!2C|3D)/.test(name)) return undefined;
  return name.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}
