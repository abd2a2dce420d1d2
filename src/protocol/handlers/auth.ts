import type { AuthPacket, ConnectPacket } from '../../codec/packets.js';
import { RC } from '../../codec/reason-codes.js';
import type { AuthOutcome } from '../../hooks/authenticator.js';
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
  ch.authConversation = authenticator.start(ch.client, false);
  return run(ch, ch.authConversation.step(p.properties?.authenticationData), false);
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
      ch.terminate('unexpected AUTH reason code during authentication');
      return undefined;
    }
    return run(ch, ch.authConversation.step(data), false);
  }
  // connected
  if (p.reasonCode === RC.ReAuthenticate) {
    const authenticator = ch.broker.authenticator(method);
    if (authenticator === undefined) {
      ch.closeWith(RC.BadAuthenticationMethod, 'authentication method no longer available');
      return undefined;
    }
    ch.authConversation = authenticator.start(ch.client, true);
    return run(ch, ch.authConversation.step(data), true);
  }
  if (p.reasonCode === RC.ContinueAuthentication && ch.authConversation !== undefined) {
    return run(ch, ch.authConversation.step(data), true);
  }
  ch.closeWith(RC.ProtocolError, 'AUTH outside an authentication exchange');
  return undefined;
}

function run(ch: Channel, outcome: AuthOutcome | Promise<AuthOutcome>, reauth: boolean): Promise<void> | undefined {
  if (isPromise(outcome)) {
    return outcome.then(
      (o) => apply(ch, o, reauth),
      () => apply(ch, { kind: 'failure', reason: 'authentication error' }, reauth),
    );
  }
  return apply(ch, outcome, reauth);
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
