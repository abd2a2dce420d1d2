// Converts between Midge's packet model and mqtt-packet's objects, for differential tests.
import type mqttPacket from 'mqtt-packet';
import type { Packet, Properties, ProtocolVersion, UserProperties } from '../../src/codec/packets.js';

type Obj = Record<string, unknown>;

/** mqtt-packet carries these byte properties as booleans. */
const BOOLEAN_PROPS = new Set([
  'payloadFormatIndicator', 'requestProblemInformation', 'requestResponseInformation', 'retainAvailable',
  'wildcardSubscriptionAvailable', 'subscriptionIdentifiersAvailable', 'sharedSubscriptionAvailable',
]);

function propsOut(p: Properties | undefined): Obj | undefined {
  if (p === undefined) return undefined;
  const out: Obj = {};
  for (const [k, v] of Object.entries(p)) {
    if (v === undefined) continue;
    if (k === 'userProperties') {
      const up: Record<string, string | string[]> = {};
      for (const [name, value] of v as UserProperties) {
        const prev = up[name];
        up[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
      }
      out.userProperties = up;
    } else if (k === 'subscriptionIdentifiers') {
      const ids = v as number[];
      out.subscriptionIdentifier = ids.length === 1 ? ids[0] : ids;
    } else if (BOOLEAN_PROPS.has(k)) {
      out[k] = v === 1;
    } else {
      out[k] = v;
    }
  }
  return out;
}

function propsIn(p: Obj | undefined): Properties | undefined {
  if (p === undefined) return undefined;
  const out: Obj = {};
  for (const [k, v] of Object.entries(p)) {
    if (k === 'userProperties') {
      const pairs: UserProperties = [];
      for (const [name, value] of Object.entries(v as Obj)) {
        for (const one of Array.isArray(value) ? value : [value]) pairs.push([name, String(one)]);
      }
      out.userProperties = pairs;
    } else if (k === 'subscriptionIdentifier') {
      out.subscriptionIdentifiers = Array.isArray(v) ? v : [v];
    } else if (BOOLEAN_PROPS.has(k)) {
      out[k] = v === true ? 1 : 0;
    } else {
      out[k] = v;
    }
  }
  return Object.keys(out).length === 0 ? undefined : (out as Properties);
}

/** Midge packet -> mqtt-packet object. */
export function toMqttPacket(p: Packet, version: ProtocolVersion): Obj {
  const v5 = version === 5;
  const withProps = (o: Obj, props: Properties | undefined): Obj => (v5 && props !== undefined ? { ...o, properties: propsOut(props) } : o);
  switch (p.type) {
    case 'connect': {
      const o: Obj = {
        cmd: 'connect', protocolId: p.protocolName, protocolVersion: p.protocolVersion, clean: p.cleanStart,
        keepalive: p.keepAlive, clientId: p.clientId,
      };
      if (p.username !== undefined) o.username = p.username;
      if (p.password !== undefined) o.password = p.password;
      if (p.will !== undefined) {
        const w = p.will;
        o.will = withProps({ topic: w.topic, payload: w.payload, qos: w.qos, retain: w.retain }, w.properties);
      }
      return withProps(o, p.properties);
    }
    case 'connack':
      return withProps({ cmd: 'connack', sessionPresent: p.sessionPresent, [v5 ? 'reasonCode' : 'returnCode']: p.reasonCode }, p.properties);
    case 'publish': {
      const o: Obj = { cmd: 'publish', topic: p.topic, payload: p.payload, qos: p.qos, retain: p.retain, dup: p.dup };
      if (p.packetId !== undefined) o.messageId = p.packetId;
      return withProps(o, p.properties);
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return withProps({ cmd: p.type, messageId: p.packetId, ...(v5 ? { reasonCode: p.reasonCode ?? 0 } : {}) }, p.properties);
    case 'subscribe':
      return withProps({
        cmd: 'subscribe', messageId: p.packetId,
        subscriptions: p.subscriptions.map((s) => ({
          topic: s.topicFilter, qos: s.qos,
          ...(v5 ? { nl: s.noLocal, rap: s.retainAsPublished, rh: s.retainHandling } : {}),
        })),
      }, p.properties);
    case 'suback':
      return withProps({ cmd: 'suback', messageId: p.packetId, granted: p.reasonCodes }, p.properties);
    case 'unsubscribe':
      return withProps({ cmd: 'unsubscribe', messageId: p.packetId, unsubscriptions: p.topicFilters }, p.properties);
    case 'unsuback':
      return withProps({ cmd: 'unsuback', messageId: p.packetId, ...(v5 ? { granted: p.reasonCodes } : {}) }, p.properties);
    case 'pingreq':
    case 'pingresp':
      return { cmd: p.type };
    case 'disconnect':
      return withProps({ cmd: 'disconnect', ...(v5 ? { reasonCode: p.reasonCode ?? 0 } : {}) }, p.properties);
    case 'auth':
      return withProps({ cmd: 'auth', reasonCode: p.reasonCode }, p.properties);
  }
}

/** mqtt-packet object -> Midge packet (as Midge would decode it). */
export function fromMqttPacket(o: mqttPacket.Packet, version: ProtocolVersion): Packet {
  const a = o as unknown as Obj;
  const props = propsIn(a.properties as Obj | undefined);
  const opt = <T extends Obj>(x: T): T => (props === undefined ? x : { ...x, properties: props });
  switch (o.cmd) {
    case 'connect': {
      const p: Obj = {
        type: 'connect', protocolName: a.protocolId, protocolVersion: a.protocolVersion, cleanStart: a.clean,
        keepAlive: a.keepalive, clientId: a.clientId,
      };
      if (a.username !== undefined) p.username = a.username;
      if (a.password !== undefined) p.password = a.password;
      if (a.will !== undefined && a.will !== null) {
        const w = a.will as Obj;
        const wp = propsIn(w.properties as Obj | undefined);
        p.will = { topic: w.topic, payload: w.payload, qos: w.qos, retain: w.retain, ...(wp === undefined ? {} : { properties: wp }) };
      }
      return opt(p) as unknown as Packet;
    }
    case 'connack':
      return opt({ type: 'connack', sessionPresent: a.sessionPresent, reasonCode: (version === 5 ? a.reasonCode : a.returnCode) ?? 0 }) as unknown as Packet;
    case 'publish': {
      const p: Obj = { type: 'publish', topic: a.topic, payload: a.payload, qos: a.qos, retain: a.retain, dup: a.dup };
      if ((a.qos as number) > 0) p.packetId = a.messageId;
      return opt(p) as unknown as Packet;
    }
    case 'puback':
    case 'pubrec':
    case 'pubrel':
    case 'pubcomp':
      return opt({ type: o.cmd, packetId: a.messageId, ...(version === 5 ? { reasonCode: a.reasonCode ?? 0 } : {}) }) as unknown as Packet;
    case 'subscribe':
      return opt({
        type: 'subscribe', packetId: a.messageId,
        subscriptions: (a.subscriptions as Obj[]).map((s) => ({
          topicFilter: s.topic, qos: s.qos,
          noLocal: version === 5 ? Boolean(s.nl) : false,
          retainAsPublished: version === 5 ? Boolean(s.rap) : false,
          retainHandling: version === 5 ? (s.rh ?? 0) : 0,
        })),
      }) as unknown as Packet;
    case 'suback':
      return opt({ type: 'suback', packetId: a.messageId, reasonCodes: a.granted }) as unknown as Packet;
    case 'unsubscribe':
      return opt({ type: 'unsubscribe', packetId: a.messageId, topicFilters: a.unsubscriptions }) as unknown as Packet;
    case 'unsuback':
      return opt({ type: 'unsuback', packetId: a.messageId, reasonCodes: version === 5 ? a.granted ?? [] : [] }) as unknown as Packet;
    case 'pingreq':
    case 'pingresp':
      return { type: o.cmd };
    case 'disconnect':
      return opt({ type: 'disconnect', ...(version === 5 ? { reasonCode: a.reasonCode ?? 0 } : {}) }) as unknown as Packet;
    case 'auth':
      return opt({ type: 'auth', reasonCode: a.reasonCode ?? 0 }) as unknown as Packet;
  }
}

/** A packet with the optional parts each side may fill in differently made explicit. */
export function normalize(p: Packet, version: ProtocolVersion): unknown {
  const o = JSON.parse(JSON.stringify(p, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && (v as Obj).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('hex') : v,
  )) as Obj;
  const clean = (x: Obj): void => {
    if (x.properties !== undefined) {
      const props = x.properties as Obj;
      if (Array.isArray(props.userProperties)) {
        // mqtt-packet groups values by name; compare in that grouping
        const pairs = props.userProperties as Array<[string, string]>;
        const names = [...new Set(pairs.map((q) => q[0]))];
        props.userProperties = names.flatMap((n) => pairs.filter((q) => q[0] === n));
      }
      if (Object.keys(props).length === 0) delete x.properties;
    }
  };
  clean(o);
  if (o.will !== undefined) clean(o.will as Obj);
  if (version === 5 && (o.type === 'puback' || o.type === 'pubrec' || o.type === 'pubrel' || o.type === 'pubcomp' || o.type === 'disconnect')) {
    o.reasonCode ??= 0;
  }
  return o;
}
