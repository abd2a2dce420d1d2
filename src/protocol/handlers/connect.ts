import { Buffer } from 'node:buffer';
import type { ConnectPacket, Properties } from '../../codec/packets.js';
import { RC, RC3, connackCodeForV4 } from '../../codec/reason-codes.js';
import type { Channel } from '../channel.js';
import { LARGEST_PACKET } from '../../codec/packets.js';
import { encodePacket } from '../../codec/encoder.js';
import { isPromise, settle } from '../maybe-promise.js';
import { checkTopicName } from '../../topic/validate.js';
import { OutboundAliases } from '../outbound-aliases.js';
import { startConnectAuth } from './auth.js';
import { ownBytes, ownProperties } from '../../session/message.js';

/**
 * CONNECT: validate, authenticate (possibly asynchronously), then open or resume the session and
 * answer with CONNACK. Packets that arrive meanwhile wait in the channel's backlog.
 */
export function handleConnect(ch: Channel, p: ConnectPacket): Promise<void> | undefined {
  const settings = ch.broker.settings;
  ch.version = p.protocolVersion;
  ch.state = 'connecting';
  const v5 = p.protocolVersion === 5;
  const props = p.properties;
  if (v5) {
    ch.problemInformation = props?.requestProblemInformation !== 0;
    // set first: a refusing CONNACK is held to the client's limit too ([MQTT-3.2.2-19])
    ch.clientMaxPacketSize = props?.maximumPacketSize ?? LARGEST_PACKET;
  }

  let clientId = p.clientId;
  let assigned = false;
  if (clientId.length === 0) {
    if (p.protocolVersion === 3 || (p.protocolVersion === 4 && !p.cleanStart)) {
      // [MQTT-3.1.3-8] 3.1.1: an empty id needs Clean Session 1; 3.1 requires an id
      return refuse(ch, RC.ClientIdentifierNotValid, 'a client identifier is required for a persistent session');
    }
    // [MQTT-3.1.3-6] [MQTT-3.2.2-16] the server assigns a unique identifier
    clientId = ch.broker.assignClientId();
    assigned = true;
    if (smallestConnack(clientId) > ch.clientMaxPacketSize) {
      // [MQTT-3.2.2-16] its CONNACK must carry the identifier, and cannot: no session is opened
      // and nothing is sent, since no packet may come before a CONNACK ([MQTT-3.2.0-1])
      ch.terminate(`the assigned client identifier does not fit the client's Maximum Packet Size of ${ch.clientMaxPacketSize} bytes`);
      return undefined;
    }
  } else if (p.protocolVersion === 3 && clientId.length > 23) {
    // MQTT 3.1 allows 1 to 23 characters
    return refuse(ch, RC.ClientIdentifierNotValid, 'MQTT 3.1 client identifiers are at most 23 characters');
  } else if (Buffer.byteLength(clientId) > settings.maxClientIdLength) {
    return refuse(ch, RC.ClientIdentifierNotValid, `client identifier longer than ${settings.maxClientIdLength} bytes`);
  }

  if (v5) {
    if (props?.authenticationData !== undefined && props.authenticationMethod === undefined) {
      // 5.0 section 3.1.2.11.10: Authentication Data without a method is a Protocol Error
      return refuse(ch, RC.ProtocolError, 'authentication data without an authentication method');
    }
    if (props?.authenticationMethod !== undefined && ch.broker.authenticator(props.authenticationMethod) === undefined) {
      // [MQTT-4.12.0-1] a method we do not know: CONNACK 0x8C and close
      return refuse(ch, RC.BadAuthenticationMethod, `authentication method ${props.authenticationMethod} is not supported`);
    }
    if (p.will?.qos !== undefined && p.will.qos > settings.maximumQoS) {
      // [MQTT-3.2.2-12]
      return refuse(ch, RC.QoSNotSupported, `will QoS ${p.will.qos} is above the maximum QoS ${settings.maximumQoS}`);
    }
    if (p.will?.retain === true && !settings.retainAvailable) {
      // [MQTT-3.2.2-13]
      return refuse(ch, RC.RetainNotSupported, 'retained messages are not available');
    }
  }

  const refusal = ch.conn.refusal;
  if (refusal !== undefined) {
    // over a connection limit: 5.0 gets the precise code (0x97 quota, 0x9F rate), 3.1.1 "server unavailable"
    return refuse(ch, refusal.reasonCode, refusal.reason);
  }

  if (p.will !== undefined) {
    const invalid = checkTopicName(p.will.topic, settings) ?? (p.will.properties?.responseTopic === undefined ? null : checkTopicName(p.will.properties.responseTopic, settings));
    if (invalid !== null) {
      // a will that could never be published: 5.0 says why, 3.1.1 has no code for it and just closes
      if (v5) return refuse(ch, RC.TopicNameInvalid, `will topic ${invalid}`);
      ch.terminate(`will topic ${invalid}`, RC.TopicNameInvalid);
      return undefined;
    }
  }

  if (v5 && settings.serverReference !== undefined) {
    // 5.0 section 4.11: redirect the client to another server
    const code = settings.serverMoved ? RC.ServerMoved : RC.UseAnotherServer;
    return refuse(ch, code, 'use another server', { serverReference: settings.serverReference });
  }

  // a certificate that names no one is no identity, and the one the client claims is not taken instead
  if (ch.conn.certificateUsername === '') return refuse(ch, RC.BadUserNameOrPassword, 'client certificate has no subject CN to take as the user name');
  const username = ch.conn.certificateUsername ?? p.username;
  ch.client = { id: clientId, username, remoteAddress: ch.conn.remoteAddress, protocolVersion: p.protocolVersion, connectedAt: Date.now(), keepAlive: p.keepAlive };
  const method = v5 ? props?.authenticationMethod : undefined;
  if (method !== undefined) return startConnectAuth(ch, p, method, clientId, assigned);
  const verdict = ch.broker.authenticate(ch.client, { username: p.username, password: p.password }, p, ch.conn.certificateUsername !== undefined, ch.conn.allowAnonymous);
  if (isPromise(verdict)) return settle(verdict).then((ok) => accept(ch, p, ok, clientId, assigned));
  return accept(ch, p, verdict, clientId, assigned);
}

/** The client is let in: once no other node of a cluster holds its client id, its session opens here. */
export function accept(ch: Channel, p: ConnectPacket, allowed: boolean, clientId: string, assigned: boolean, authData?: Buffer): Promise<void> | undefined {
  if (ch.state !== 'connecting' && ch.state !== 'authenticating') return undefined;
  if (!allowed) {
    refuse(ch, RC.BadUserNameOrPassword, 'not authorized');
    return undefined;
  }
  ch.authenticated = true;
  const claimed = ch.broker.claimSession(clientId, p.cleanStart);
  if (claimed === undefined) return open(ch, p, clientId, assigned, authData);
  return claimed.then(() => {
    // the client may have gone while its session was fetched
    if (ch.state === 'connecting' || ch.state === 'authenticating') return open(ch, p, clientId, assigned, authData);
    return undefined;
  });
}

/** Opens the session and sends CONNACK; a promise while the CONNACK waits for the disk (packets from the client wait too). */
function open(ch: Channel, p: ConnectPacket, clientId: string, assigned: boolean, authData: Buffer | undefined): Promise<void> | undefined {
  const settings = ch.broker.settings;
  const v5 = p.protocolVersion === 5;
  const props = p.properties;

  let expiry: number;
  if (v5) {
    expiry = Math.min(props?.sessionExpiryInterval ?? 0, settings.maxSessionExpiryInterval);
    ch.outbound.window = Math.min(props?.receiveMaximum ?? 65535, settings.maxInflight);
    // [MQTT-3.1.2-27] (5.0) no aliases unless the client said how many it takes
    const aliasMax = props?.topicAliasMaximum ?? 0;
    if (aliasMax > 0) ch.outbound.aliases = new OutboundAliases(aliasMax);
  } else {
    // 3.1.1 Clean Session 0 keeps the session; there is no expiry, only the broker's cap.
    expiry = p.cleanStart ? 0 : settings.maxSessionExpiryInterval;
    ch.outbound.window = settings.maxInflight;
  }
  ch.outbound.windowBytes = settings.maxInflightBytes === 0 ? Infinity : settings.maxInflightBytes;
  ch.sessionExpiry = expiry;

  let keepAlive = p.keepAlive;
  let serverKeepAlive: number | undefined;
  if (v5 && settings.maxKeepAlive > 0 && (keepAlive === 0 || keepAlive > settings.maxKeepAlive)) {
    // [MQTT-3.2.2-21] the client must use the Server Keep Alive we send
    keepAlive = settings.maxKeepAlive;
    serverKeepAlive = keepAlive;
  }
  // the will lives as long as the connection: its bytes must not keep the CONNECT's read alive
  ch.will = p.will === undefined ? undefined : { ...p.will, payload: ownBytes(p.will.payload), properties: ownProperties(p.will.properties) };
  if (keepAlive !== p.keepAlive) ch.client = { ...ch.client, keepAlive };

  const { session, present, discardedStored } = ch.broker.openSession(ch, p.cleanStart, expiry);
  ch.session = session;
  ch.state = 'connected';
  ch.conn.setKeepAlive(keepAlive);

  let ackProps: Properties | undefined;
  if (v5) {
    ackProps = {
      receiveMaximum: settings.receiveMaximum,
      maximumPacketSize: settings.maxPacketSize,
      topicAliasMaximum: settings.topicAliasMaximum,
    };
    if (settings.maximumQoS < 2) ackProps.maximumQoS = settings.maximumQoS as 0 | 1;
    if (!settings.retainAvailable) ackProps.retainAvailable = 0;
    if (!settings.wildcardSubscriptionAvailable) ackProps.wildcardSubscriptionAvailable = 0;
    if (!settings.subscriptionIdentifiersAvailable) ackProps.subscriptionIdentifiersAvailable = 0;
    if (!settings.sharedSubscriptionAvailable) ackProps.sharedSubscriptionAvailable = 0;
    if (props?.sessionExpiryInterval !== undefined && expiry !== props.sessionExpiryInterval) {
      // tell the client the interval actually in force
      ackProps.sessionExpiryInterval = expiry;
    }
    if (assigned) ackProps.assignedClientIdentifier = clientId;
    if (serverKeepAlive !== undefined) ackProps.serverKeepAlive = serverKeepAlive;
    if (props?.requestResponseInformation === 1 && settings.responseInformationPrefix !== '') {
      // [MQTT-3.1.2-28] only when asked: the topic prefix this client may use for responses
      ackProps.responseInformation = `${settings.responseInformationPrefix}${clientId}`;
    }
    if (ch.authMethod !== undefined) {
      // [MQTT-4.12.0-5] a successful CONNACK repeats the method of the exchange
      ackProps.authenticationMethod = ch.authMethod;
      if (authData !== undefined) ackProps.authenticationData = authData;
    }
  }
  // [MQTT-3.1.2-4] a session clean start discarded must stay gone after a crash once the client was
  // told Session Present 0: the CONNACK waits for its removal to be on disk
  const removal = discardedStored === true ? ch.broker.committed() : undefined;
  if (removal === undefined) {
    connack(ch, present, ackProps);
    return undefined;
  }
  ch.connackDue = true;
  return removal.then(
    () => {
      ch.connackDue = false;
      if (ch.state === 'connected') connack(ch, present, ackProps);
    },
    (err: unknown) => {
      ch.connackDue = false;
      // the client is told the server failed, and tries again later
      const reason = `the session could not be started: ${err instanceof Error ? err.message : String(err)}`;
      if (ch.version === 5) ch.sendConnack(false, RC.ImplementationSpecificError, ch.problemInformation ? { reasonString: reason } : undefined);
      else ch.sendConnack(false, RC3.ServerUnavailable);
      // a client told it is not connected has no will to publish
      ch.will = undefined;
      ch.terminate(reason, RC.ImplementationSpecificError);
    },
  );
}

function connack(ch: Channel, present: boolean, ackProps: Properties | undefined): void {
  // [MQTT-3.2.2-2] [MQTT-3.2.2-3] Session Present reflects whether a session was resumed
  ch.sendConnack(present, 0, ackProps);
  // a CONNACK the client's Maximum Packet Size could not take ended the connection (channel.ts)
  if (present && ch.state === 'connected') ch.outbound.resume();
}

/** Bytes of a successful 5.0 CONNACK that carries an assigned client identifier and nothing else. */
function smallestConnack(clientId: string): number {
  return encodePacket({ type: 'connack', sessionPresent: false, reasonCode: 0, properties: { assignedClientIdentifier: clientId } }, 5).length;
}

/** CONNACK with an error code, then close ([MQTT-3.2.2-5] / [MQTT-3.2.2-7]). */
export function refuse(ch: Channel, reasonCode: number, reason: string, extra?: Properties): undefined {
  if (ch.version === 5) {
    const properties: Properties | undefined = ch.problemInformation ? { ...extra, reasonString: reason } : extra;
    ch.sendConnack(false, reasonCode, properties);
  } else {
    const rc = connackCodeForV4(reasonCode);
    ch.sendConnack(false, rc === RC3.Accepted ? RC3.ServerUnavailable : rc);
  }
  ch.terminate(reason, reasonCode);
  return undefined;
}
