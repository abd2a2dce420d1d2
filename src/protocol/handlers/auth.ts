import { Buffer } from 'node:buffer';
import type { AuthPacket, ConnectPacket } from '../../codec/packets.js';
import { RC } from '../../codec/reason-codes.js';
import type { AuthConversation, AuthOutcome, EnhancedAuthenticator } from '../../hooks/authenticator.js';
import type { Channel } from '../channel.js';
import { isPromise } from '../maybe-promise.js';
import { accept, refuse } from './connect.js';

/**
 * MQTT 5 enhanced authentication (section 4.12): CONNECT names a method, then AUTH 0x18 packets go
 * back and forth until the method succeeds (CONNACK 0x00) or fails (CONNACK 0x87). On a live
 * connection the client may start again with AUTH 0x19 (re-authentication).
 */
export function startConnectAuth(ch: Channel, p: ConnectPacket, method: string, clientId: string, assigned: boolean): Promise<void> | undefined {
  const authenticator = ch.broker.authenticator(method);
  if (authenticator === undefined) return refuse(ch, RC.BadAuthenticationMethod, `authentication method ${method} is not supported`);
  ch.authMethod = method;
  ch.state = 'authenticating';
  ch.pendingConnect = { packet: p, clientId, assigned };
  return run(ch, begin(ch, authenticator, false, p.properties?.authenticationData), false);
}

export function handleAuth(ch: Channel, p: AuthPacket): Promise<void> | undefined {
  const method = p.properties?.authenticationMethod;
  if (ch.authMethod === undefined) {
    // [MQTT-4.12.0-7] AUTH is only valid after a CONNECT that named a method
    ch.closeWith(RC.ProtocolError, 'AUTH without an authentication method in CONNECT');
    return undefined;
  }
  if (method !== ch.authMethod) {
    // [MQTT-4.12.0-5] every AUTH carries the method of the CONNECT
    ch.closeWith(RC.ProtocolError, 'AUTH with a different authentication method');
    return undefined;
  }
  const data = p.properties?.authenticationData;
  if (ch.state === 'authenticating') {
    if (p.reasonCode !== RC.ContinueAuthentication || ch.authConversation === undefined) {
      ch.terminate('unexpected AUTH reason code during authentication', RC.ProtocolError);
      return undefined;
    }
    return run(ch, step(ch.authConversation, data), false);
  }
  // connected
  if (p.reasonCode === RC.ReAuthenticate) {
    const authenticator = ch.broker.authenticator(method);
    if (authenticator === undefined) {
      ch.closeWith(RC.BadAuthenticationMethod, 'authentication method no longer available');
      return undefined;
    }
    return run(ch, begin(ch, authenticator, true, data), true);
  }
  if (p.reasonCode === RC.ContinueAuthentication && ch.authConversation !== undefined) {
    return run(ch, step(ch.authConversation, data), true);
  }
  ch.closeWith(RC.ProtocolError, 'AUTH outside an authentication exchange');
  return undefined;
}

/** What a method that throws, rejects or answers something that is no outcome counts as. */
const FAILED: AuthOutcome = { kind: 'failure', reason: 'authentication error' };

/** Starts a method's exchange and takes its first step. */
function begin(ch: Channel, authenticator: EnhancedAuthenticator, reauth: boolean, data: Buffer | undefined): AuthOutcome | Promise<AuthOutcome> {
  try {
    ch.authConversation = authenticator.start(ch.client, reauth);
  } catch {
    // a method's mistake refuses this client; it does not reach the broker's handling of others
    return FAILED;
  }
  return step(ch.authConversation, data);
}

function step(conversation: AuthConversation, data: Buffer | undefined): AuthOutcome | Promise<AuthOutcome> {
  try {
    return conversation.step(data);
  } catch {
    return FAILED;
  }
}

/** The outcome, if it is one that can be sent: its data a Buffer, its user name a string. */
function checked(outcome: unknown): AuthOutcome {
  const o = outcome as { kind?: unknown; data?: unknown; username?: unknown; reasonCode?: unknown; reason?: unknown } | null | undefined;
  if (o === null || typeof o !== 'object') return FAILED;
  if (o.kind === 'failure') {
    // a refusal's code is an error code (0x80 and above); any other is Not authorized
    const code = typeof o.reasonCode === 'number' && Number.isInteger(o.reasonCode) && o.reasonCode >= 0x80 && o.reasonCode <= 0xff ? o.reasonCode : undefined;
    return { kind: 'failure', reasonCode: code, reason: typeof o.reason === 'string' ? o.reason : undefined };
  }
  if (o.kind === 'continue') return Buffer.isBuffer(o.data) ? (o as AuthOutcome) : FAILED;
  if (o.kind !== 'success') return FAILED;
  const dataOk = o.data === undefined || Buffer.isBuffer(o.data);
  const userOk = o.username === undefined || typeof o.username === 'string';
  return dataOk && userOk ? (o as AuthOutcome) : FAILED;
}

function run(ch: Channel, outcome: AuthOutcome | Promise<AuthOutcome>, reauth: boolean): Promise<void> | undefined {
  if (isPromise(outcome)) {
    return outcome.then(
      (o) => apply(ch, checked(o), reauth),
      () => apply(ch, FAILED, reauth),
    );
  }
  return apply(ch, checked(outcome), reauth);
}

function apply(ch: Channel, outcome: AuthOutcome, reauth: boolean): Promise<void> | undefined {
  if (ch.state === 'closed') return undefined;
  const method = ch.authMethod as string;
  if (outcome.kind === 'continue') {
    // [MQTT-4.12.0-2]
    ch.send({ type: 'auth', reasonCode: RC.ContinueAuthentication, properties: { authenticationMethod: method, authenticationData: outcome.data } });
    return;
  }
  ch.authConversation = undefined;
  if (outcome.kind === 'failure') {
    const code = outcome.reasonCode ?? RC.NotAuthorized;
    const reason = outcome.reason ?? 'authentication failed';
    // [MQTT-4.12.0-4] / [MQTT-4.12.1-2]
    if (reauth) ch.closeWith(code, reason);
    else refuse(ch, code, reason);
    return;
  }
  if (outcome.username !== undefined) ch.client = { ...ch.client, username: outcome.username };
  if (reauth) {
    const properties = outcome.data === undefined ? { authenticationMethod: method } : { authenticationMethod: method, authenticationData: outcome.data };
    ch.send({ type: 'auth', reasonCode: RC.Success, properties });
    return;
  }
  const pending = ch.pendingConnect;
  ch.pendingConnect = undefined;
  if (pending === undefined) return undefined;
  return accept(ch, pending.packet, true, pending.clientId, pending.assigned, outcome.data);
}
