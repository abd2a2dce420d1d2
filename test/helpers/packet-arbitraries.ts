// fast-check generators of valid MQTT packets, in Midge's packet model, for every kind and version.
import fc from 'fast-check';
import type { Packet, Properties, ProtocolVersion, QoS } from '../../src/codec/packets.js';

/** Well-formed UTF-8 without U+0000 ([MQTT-1.5.3-1] [MQTT-1.5.3-2]). */
export const text = (maxLength = 12): fc.Arbitrary<string> =>
  fc.string({ unit: 'grapheme', maxLength }).filter((s) => !s.includes('\u0000'));

const level = fc.string({ unit: fc.constantFrom('a', 'b', 'z', '0', '$', ' ', 'é', '水', '-'), maxLength: 4 });
export const topicName: fc.Arbitrary<string> = fc
  .array(level, { minLength: 1, maxLength: 4 })
  .map((ls) => ls.join('/'))
  .filter((t) => t.length > 0);
export const topicFilter: fc.Arbitrary<string> = fc
  .tuple(fc.array(fc.oneof(level, fc.constant('+')), { minLength: 1, maxLength: 4 }), fc.boolean())
  .map(([ls, hash]) => (hash ? [...ls, '#'] : ls).join('/'))
  .filter((t) => t.length > 0);

const bytes = (maxLength = 16): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
const u16 = fc.integer({ min: 0, max: 0xffff });
const u16nz = fc.integer({ min: 1, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const qos = fc.constantFrom<QoS>(0, 1, 2);
const flag = fc.constantFrom<0 | 1>(0, 1);
const subId = fc.integer({ min: 1, max: 268435455 });

/**
 * One distinct-named group after another, so both libraries agree on the order. mqtt-packet keeps
 * user properties in a plain object, where integer-like names ("0", "12") come first whatever the
 * order: such names are left out here.
 */
const propertyName = text(6).filter((n) => !/^(0|[1-9][0-9]*)$/.test(n));
const userProperties = fc
  .uniqueArray(fc.tuple(propertyName, fc.array(text(6).filter((v) => v.length > 0), { minLength: 1, maxLength: 2 })), { selector: (x) => x[0], minLength: 1, maxLength: 3 })
  .map((groups) => groups.flatMap(([name, values]) => values.map((v) => [name, v] as [string, string])));

const PROPERTY: Record<string, fc.Arbitrary<unknown>> = {
  payloadFormatIndicator: flag,
  messageExpiryInterval: u32,
  contentType: text(),
  responseTopic: topicName,
  correlationData: bytes(),
  sessionExpiryInterval: u32,
  assignedClientIdentifier: text(),
  serverKeepAlive: u16,
  authenticationMethod: text(),
  authenticationData: bytes(),
  requestProblemInformation: flag,
  willDelayInterval: u32,
  requestResponseInformation: flag,
  responseInformation: text(),
  serverReference: text(),
  reasonString: text(),
  receiveMaximum: u16nz,
  topicAliasMaximum: u16,
  topicAlias: u16nz,
  maximumQoS: flag,
  retainAvailable: flag,
  userProperties,
  maximumPacketSize: fc.integer({ min: 1, max: 0xffffffff }),
  wildcardSubscriptionAvailable: flag,
  subscriptionIdentifiersAvailable: flag,
  sharedSubscriptionAvailable: flag,
};

/** Which properties each packet may carry (MQTT 5.0 section 2.2.2.2). */
const ALLOWED: Record<string, string[]> = {
  connect: ['sessionExpiryInterval', 'authenticationMethod', 'authenticationData', 'requestProblemInformation', 'requestResponseInformation', 'receiveMaximum', 'topicAliasMaximum', 'userProperties', 'maximumPacketSize'],
  will: ['payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'willDelayInterval', 'userProperties'],
  connack: ['sessionExpiryInterval', 'assignedClientIdentifier', 'serverKeepAlive', 'authenticationMethod', 'authenticationData', 'responseInformation', 'serverReference', 'reasonString', 'receiveMaximum', 'topicAliasMaximum', 'maximumQoS', 'retainAvailable', 'userProperties', 'maximumPacketSize', 'wildcardSubscriptionAvailable', 'subscriptionIdentifiersAvailable', 'sharedSubscriptionAvailable'],
  publish: ['payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'subscriptionIdentifiers', 'topicAlias', 'userProperties'],
  ack: ['reasonString', 'userProperties'],
  subscribe: ['subscriptionIdentifiers', 'userProperties'],
  unsubscribe: ['userProperties'],
  disconnect: ['sessionExpiryInterval', 'serverReference', 'reasonString', 'userProperties'],
  auth: ['authenticationMethod', 'authenticationData', 'reasonString', 'userProperties'],
};

function properties(kind: keyof typeof ALLOWED, version: ProtocolVersion): fc.Arbitrary<Properties | undefined> {
  if (version !== 5) return fc.constant(undefined);
  const model: Record<string, fc.Arbitrary<unknown>> = {};
  for (const name of ALLOWED[kind] as string[]) {
    if (name === 'subscriptionIdentifiers') {
      model[name] = kind === 'subscribe' ? subId.map((n) => [n]) : fc.array(subId, { minLength: 1, maxLength: 3 });
    } else {
      model[name] = PROPERTY[name] as fc.Arbitrary<unknown>;
    }
  }
  return fc.option(fc.record(model, { requiredKeys: [] }), { nil: undefined }).map((p) =>
    p === undefined || Object.keys(p).length === 0 ? undefined : (p as Properties),
  );
}

const withProps = <T extends object>(arb: fc.Arbitrary<T>, kind: keyof typeof ALLOWED, version: ProtocolVersion): fc.Arbitrary<Packet> =>
  fc.tuple(arb, properties(kind, version)).map(([p, props]) => (props === undefined ? p : { ...p, properties: props }) as unknown as Packet);

const ACK_CODES: Record<string, number[]> = {
  puback: [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
  pubrec: [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
  pubrel: [0x00, 0x92],
  pubcomp: [0x00, 0x92],
};
const CONNACK_CODES_5 = [0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x90, 0x95, 0x97, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9f];
const SUBACK_CODES_5 = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8f, 0x91, 0x97, 0x9e, 0xa1, 0xa2];
const UNSUBACK_CODES_5 = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8f, 0x91];
const DISCONNECT_CODES = [0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8b, 0x8d, 0x8e, 0x8f, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xa1, 0xa2];

function connect(version: ProtocolVersion): fc.Arbitrary<Packet> {
  const will = fc.option(
    fc.record({ topic: topicName, payload: bytes(), qos, retain: fc.boolean(), properties: properties('will', version) }).map((w) => {
      if (w.properties === undefined) delete (w as { properties?: Properties }).properties;
      return w;
    }),
    { nil: undefined },
  );
  const clientId = version === 3 ? fc.stringMatching(/^[a-zA-Z0-9]{1,23}$/) : fc.oneof(fc.constant(''), text(23));
  return withProps(
    fc.record({ cleanStart: fc.boolean(), keepAlive: u16, clientId, will, username: fc.option(text(), { nil: undefined }), password: fc.option(bytes(), { nil: undefined }) }).map((r) => {
      const p: Record<string, unknown> = {
        type: 'connect', protocolName: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version,
        cleanStart: r.clientId === '' ? true : r.cleanStart, keepAlive: r.keepAlive, clientId: r.clientId,
      };
      if (r.will !== undefined) p.will = r.will;
      // 3.1/3.1.1: a password needs a user name [MQTT-3.1.2-22]; mqtt-packet asks the same of 5.0
      if (r.username !== undefined) p.username = r.username;
      if (r.password !== undefined && r.username !== undefined) p.password = r.password;
      return p;
    }),
    'connect',
    version,
  );
}

/** Any valid packet of the given protocol version. */
export function packetOf(version: ProtocolVersion): fc.Arbitrary<Packet> {
  const v5 = version === 5;
  const ack = (type: 'puback' | 'pubrec' | 'pubrel' | 'pubcomp'): fc.Arbitrary<Packet> =>
    withProps(fc.record({ packetId: u16nz, code: fc.constantFrom(...(ACK_CODES[type] as number[])) }).map((r) => ({
      type, packetId: r.packetId, ...(v5 ? { reasonCode: r.code } : {}),
    })), 'ack', version);
  const kinds: Array<fc.Arbitrary<Packet>> = [
    connect(version),
    withProps(fc.record({ sessionPresent: fc.boolean(), code: v5 ? fc.constantFrom(...CONNACK_CODES_5) : fc.integer({ min: 0, max: 5 }) }).map((r) => ({
      type: 'connack', sessionPresent: r.code === 0 ? r.sessionPresent : false, reasonCode: r.code,
    })), 'connack', version),
    withProps(fc.record({ topic: topicName, payload: bytes(64), qos, retain: fc.boolean(), dup: fc.boolean(), packetId: u16nz }).map((r) => ({
      type: 'publish', topic: r.topic, payload: r.payload, qos: r.qos, retain: r.retain, dup: r.qos === 0 ? false : r.dup,
      ...(r.qos > 0 ? { packetId: r.packetId } : {}),
    })), 'publish', version),
    ack('puback'), ack('pubrec'), ack('pubrel'), ack('pubcomp'),
    withProps(fc.record({
      packetId: u16nz,
      subscriptions: fc.array(fc.record({
        topicFilter: topicFilter, qos,
        noLocal: v5 ? fc.boolean() : fc.constant(false),
        retainAsPublished: v5 ? fc.boolean() : fc.constant(false),
        retainHandling: v5 ? fc.constantFrom<0 | 1 | 2>(0, 1, 2) : fc.constant<0>(0),
      }), { minLength: 1, maxLength: 4 }),
    }).map((r) => ({ type: 'subscribe', ...r })), 'subscribe', version),
    withProps(fc.record({
      packetId: u16nz,
      reasonCodes: fc.array(fc.constantFrom(...(v5 ? SUBACK_CODES_5 : [0, 1, 2, 0x80])), { minLength: 1, maxLength: 4 }),
    }).map((r) => ({ type: 'suback', ...r })), 'ack', version),
    withProps(fc.record({ packetId: u16nz, topicFilters: fc.array(topicFilter, { minLength: 1, maxLength: 4 }) }).map((r) => ({ type: 'unsubscribe', ...r })), 'unsubscribe', version),
    withProps(fc.record({
      packetId: u16nz,
      reasonCodes: v5 ? fc.array(fc.constantFrom(...UNSUBACK_CODES_5), { minLength: 1, maxLength: 4 }) : fc.constant([] as number[]),
    }).map((r) => ({ type: 'unsuback', ...r })), 'ack', version),
    fc.constant<Packet>({ type: 'pingreq' }),
    fc.constant<Packet>({ type: 'pingresp' }),
    withProps(fc.constantFrom(...DISCONNECT_CODES).map((code) => ({ type: 'disconnect', ...(v5 ? { reasonCode: code } : {}) })), 'disconnect', version),
  ];
  if (v5) kinds.push(withProps(fc.constantFrom(0x00, 0x18, 0x19).map((code) => ({ type: 'auth', reasonCode: code })), 'auth', version));
  return fc.oneof(...kinds);
}

export const VERSIONS: ProtocolVersion[] = [3, 4, 5];
