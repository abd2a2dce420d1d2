import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * The client side of SCRAM-SHA-256 (RFC 5802 / RFC 7677), written from the RFC on its own so the
 * broker's server side is checked against an independent peer.
 */
export class ScramClient {
  readonly clientNonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private serverSignature: Buffer | undefined;

  constructor(
    private readonly username: string,
    private readonly password: string,
  ) {}

  first(): Buffer {
    const name = this.username.replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.clientFirstBare = `n=${name},r=${this.clientNonce}`;
    return Buffer.from(`n,,${this.clientFirstBare}`);
  }

  /** Answers the server-first-message with the client-final-message. */
  final(serverFirst: Buffer, options: { tamperProof?: boolean; nonce?: string } = {}): Buffer {
    const text = serverFirst.toString();
    const attrs = new Map(text.split(',').map((kv) => [kv[0], kv.slice(2)] as const));
    const nonce = attrs.get('r') as string;
    if (!nonce.startsWith(this.clientNonce)) throw new Error('server nonce does not extend ours');
    const salt = Buffer.from(attrs.get('s') as string, 'base64');
    const iterations = Number(attrs.get('i'));
    const salted = pbkdf2Sync(this.password, salt, iterations, 32, 'sha256');
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = createHash('sha256').update(clientKey).digest();
    const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${options.nonce ?? nonce}`;
    const authMessage = `${this.clientFirstBare},${text},${withoutProof}`;
    const signature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = (clientKey[i] as number) ^ (signature[i] as number);
    if (options.tamperProof === true) proof[0] = (proof[0] as number) ^ 1;
    this.serverSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }

  /** True when the server-final-message proves the server knows the credentials. */
  verifyServer(serverFinal: Buffer | undefined): boolean {
    return serverFinal !== undefined && this.serverSignature !== undefined && serverFinal.toString() === `v=${this.serverSignature.toString('base64')}`;
  }
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}
