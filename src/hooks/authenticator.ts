import type { ClientInfo, MaybePromise } from './types.js';

/** One step's outcome in an MQTT 5 enhanced authentication exchange (AUTH packets). */
export type AuthOutcome =
  /** send AUTH 0x18 with this data and wait for the client's next AUTH */
  | { readonly kind: 'continue'; readonly data: Buffer }
  /** authenticated; `data` goes in the CONNACK (or the final AUTH 0x00 of a re-authentication) */
  | { readonly kind: 'success'; readonly data?: Buffer; readonly username?: string }
  /** refused: CONNACK (or DISCONNECT on re-authentication) with 0x87 Not authorized by default */
  | { readonly kind: 'failure'; readonly reasonCode?: number; readonly reason?: string };

/** The state of one exchange with one client. */
export interface AuthConversation {
  /** Called with the Authentication Data of the CONNECT / AUTH 0x19 first, then of each AUTH 0x18. */
  step(data: Buffer | undefined): MaybePromise<AuthOutcome>;
}

/**
 * A pluggable enhanced-authentication method (MQTT 5 section 4.12), chosen by the
 * Authentication Method the client names in CONNECT.
 */
export interface EnhancedAuthenticator {
  readonly method: string;
  /** `reauthenticate` is true for an exchange started by AUTH 0x19 on a live connection. */
  start(client: ClientInfo, reauthenticate: boolean): AuthConversation;
}
