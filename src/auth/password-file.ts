import { Buffer } from 'node:buffer';
import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

/**
 * Mosquitto 2.x password files: one `user:hash` line per user, where the hash is
 * `$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512, 64-byte key) or the older `$6$SALT$HASH`
 * (SHA-512 of the password followed by the salt), salts and hashes in base64.
 */
export interface PasswordHash {
  kind: 6 | 7;
  iterations: number;
  salt: Buffer;
  hash: Buffer;
}

/** mosquitto_passwd's defaults for new `$7$` entries */
export const PBKDF2_ITERATIONS = 101;
const SALT_BYTES = 12;
const KEY_BYTES = 64;

export class PasswordFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PasswordFileError';
  }
}

export function parseHash(text: string): PasswordHash | undefined {
  const parts = text.split('$');
  if (parts[0] !== '') return undefined;
  if (parts[1] === '7' && parts.length === 5) {
    const iterations = Number(parts[2]);
    if (!Number.isInteger(iterations) || iterations < 1) return undefined;
    return { kind: 7, iterations, salt: Buffer.from(parts[3] as string, 'base64'), hash: Buffer.from(parts[4] as string, 'base64') };
  }
  if (parts[1] === '6' && parts.length === 4) {
    return { kind: 6, iterations: 1, salt: Buffer.from(parts[2] as string, 'base64'), hash: Buffer.from(parts[3] as string, 'base64') };
  }
  return undefined;
}

function derive(h: PasswordHash, password: Buffer): Buffer {
  if (h.kind === 7) return pbkdf2Sync(password, h.salt, h.iterations, h.hash.length || KEY_BYTES, 'sha512');
  return createHash('sha512').update(password).update(h.salt).digest();
}

/** A new `$7$` hash, as `mosquitto_passwd` writes them. */
export function hashPassword(password: string, iterations = PBKDF2_ITERATIONS): string {
  const salt = randomBytes(SALT_BYTES);
  const hash = pbkdf2Sync(Buffer.from(password, 'utf8'), salt, iterations, KEY_BYTES, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Users and hashes of a password file, in file order. */
export function parsePasswordFile(text: string, path: string): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new PasswordFileError(`${path}:${i + 1}: expected "user:hash"`);
    const hash = line.slice(colon + 1);
    if (parseHash(hash) === undefined) throw new PasswordFileError(`${path}:${i + 1}: the password of "${line.slice(0, colon)}" is not a $7$ or $6$ hash`);
    users.set(line.slice(0, colon), hash);
  });
  return users;
}

/** Writes users back in the file's format. */
export function formatPasswordFile(users: Map<string, string>): string {
  return [...users].map(([u, h]) => `${u}:${h}\n`).join('');
}

/** A password file loaded for checking credentials; `reload()` reads it again (SIGHUP). */
export class PasswordFile {
  private users = new Map<string, PasswordHash>();
  /** compared against for unknown users, so that they take as long as known ones */
  private readonly decoy: PasswordHash = parseHash(hashPassword(randomBytes(9).toString('base64'))) as PasswordHash;

  constructor(readonly path: string) {
    this.reload();
  }

  get size(): number {
    return this.users.size;
  }

  reload(): void {
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      throw new PasswordFileError(`cannot read the password file ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const parsed = new Map<string, PasswordHash>();
    for (const [user, hash] of parsePasswordFile(text, this.path)) parsed.set(user, parseHash(hash) as PasswordHash);
    this.users = parsed;
  }

  /** True when the user exists and the password matches (compared in constant time). */
  verify(username: string, password: Buffer | undefined): boolean {
    const known = this.users.get(username);
    const entry = known ?? this.decoy;
    const derived = derive(entry, password ?? Buffer.alloc(0));
    const equal = derived.length === entry.hash.length && timingSafeEqual(derived, entry.hash);
    return known !== undefined && password !== undefined && equal;
  }
}
