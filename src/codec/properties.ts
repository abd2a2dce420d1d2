import { Buffer } from 'node:buffer';
import type { PacketType, Properties, UserProperties } from './packets.js';
import { PROTOCOL_ERROR, Reader, Writer, malformed, utf8Length, varintSize } from './primitives.js';
import { ProtocolError } from './protocol-error.js';

type Kind = 'byte' | 'u16' | 'u32' | 'varint' | 'utf8' | 'binary' | 'pair';
type Name = keyof Properties;

interface Spec {
  id: number;
  name: Name;
  kind: Kind;
  /** packet types that may carry it; 'will' is the will properties of CONNECT */
  in: ReadonlyArray<PacketType | 'will'>;
}

const ACKS: PacketType[] = ['puback', 'pubrec', 'pubrel', 'pubcomp'];
const DIAG: Array<PacketType> = ['connack', ...ACKS, 'suback', 'unsuback', 'disconnect', 'auth'];

/** MQTT 5.0 section 2.2.2.2: every property, its type and where it may appear. */
const SPECS: Spec[] = [
  { id: 0x01, name: 'payloadFormatIndicator', kind: 'byte', in: ['publish', 'will'] },
  { id: 0x02, name: 'messageExpiryInterval', kind: 'u32', in: ['publish', 'will'] },
  { id: 0x03, name: 'contentType', kind: 'utf8', in: ['publish', 'will'] },
  { id: 0x08, name: 'responseTopic', kind: 'utf8', in: ['publish', 'will'] },
  { id: 0x09, name: 'correlationData', kind: 'binary', in: ['publish', 'will'] },
  { id: 0x0b, name: 'subscriptionIdentifiers', kind: 'varint', in: ['publish', 'subscribe'] },
  { id: 0x11, name: 'sessionExpiryInterval', kind: 'u32', in: ['connect', 'connack', 'disconnect'] },
  { id: 0x12, name: 'assignedClientIdentifier', kind: 'utf8', in: ['connack'] },
  { id: 0x13, name: 'serverKeepAlive', kind: 'u16', in: ['connack'] },
  { id: 0x15, name: 'authenticationMethod', kind: 'utf8', in: ['connect', 'connack', 'auth'] },
  { id: 0x16, name: 'authenticationData', kind: 'binary', in: ['connect', 'connack', 'auth'] },
  { id: 0x17, name: 'requestProblemInformation', kind: 'byte', in: ['connect'] },
  { id: 0x18, name: 'willDelayInterval', kind: 'u32', in: ['will'] },
  { id: 0x19, name: 'requestResponseInformation', kind: 'byte', in: ['connect'] },
  { id: 0x1a, name: 'responseInformation', kind: 'utf8', in: ['connack'] },
  { id: 0x1c, name: 'serverReference', kind: 'utf8', in: ['connack', 'disconnect'] },
  { id: 0x1f, name: 'reasonString', kind: 'utf8', in: DIAG },
  { id: 0x21, name: 'receiveMaximum', kind: 'u16', in: ['connect', 'connack'] },
  { id: 0x22, name: 'topicAliasMaximum', kind: 'u16', in: ['connect', 'connack'] },
  { id: 0x23, name: 'topicAlias', kind: 'u16', in: ['publish'] },
  { id: 0x24, name: 'maximumQoS', kind: 'byte', in: ['connack'] },
  { id: 0x25, name: 'retainAvailable', kind: 'byte', in: ['connack'] },
  { id: 0x26, name: 'userProperties', kind: 'pair', in: ['connect', 'will', 'publish', 'subscribe', 'unsubscribe', ...DIAG] },
  { id: 0x27, name: 'maximumPacketSize', kind: 'u32', in: ['connect', 'connack'] },
  { id: 0x28, name: 'wildcardSubscriptionAvailable', kind: 'byte', in: ['connack'] },
  { id: 0x29, name: 'subscriptionIdentifiersAvailable', kind: 'byte', in: ['connack'] },
  { id: 0x2a, name: 'sharedSubscriptionAvailable', kind: 'byte', in: ['connack'] },
];

const BY_ID: Array<Spec | undefined> = [];
for (const s of SPECS) BY_ID[s.id] = s;
const BY_NAME = new Map<string, Spec>(SPECS.map((s) => [s.name, s]));

/** Byte-valued properties that may only be 0 or 1. */
const BOOLEAN_BYTES = new Set<Name>([
  'payloadFormatIndicator',
  'requestProblemInformation',
  'requestResponseInformation',
  'maximumQoS',
  'retainAvailable',
  'wildcardSubscriptionAvailable',
  'subscriptionIdentifiersAvailable',
  'sharedSubscriptionAvailable',
]);

/** Reads a property list (length prefix included); undefined when it is empty. */
export function readProperties(r: Reader, where: PacketType | 'will'): Properties | undefined {
  const length = r.varint();
  if (length === 0) return undefined;
  const end = r.pos + length;
  if (end > r.end) throw malformed('properties run past the packet');
  const props: Record<string, unknown> = {};
  while (r.pos < end) {
    const id = r.varint();
    const spec = BY_ID[id];
    if (spec === undefined) throw malformed(`unknown property 0x${id.toString(16)}`);
    if (!spec.in.includes(where)) throw malformed(`property ${spec.name} is not allowed in ${where === 'will' ? 'will properties' : where.toUpperCase()}`);
    const value = readValue(r, spec);
    if (spec.kind === 'pair') {
      ((props.userProperties ??= []) as UserProperties).push(value as [string, string]);
    } else if (spec.name === 'subscriptionIdentifiers') {
      if (where === 'subscribe' && props.subscriptionIdentifiers !== undefined) throw new ProtocolError(PROTOCOL_ERROR, 'subscription identifier given twice');
      ((props.subscriptionIdentifiers ??= []) as number[]).push(value as number);
    } else {
      // [MQTT-2.2.2-2] (5.0) a property other than these may appear once
      if (props[spec.name] !== undefined) throw new ProtocolError(PROTOCOL_ERROR, `property ${spec.name} given twice`);
      props[spec.name] = value;
    }
  }
  if (r.pos !== end) throw malformed('property runs past the property length');
  return props as Properties;
}

function readValue(r: Reader, spec: Spec): unknown {
  switch (spec.kind) {
    case 'byte': {
      const v = r.byte();
      if (BOOLEAN_BYTES.has(spec.name) && v > 1) throw new ProtocolError(PROTOCOL_ERROR, `property ${spec.name} must be 0 or 1 (got ${v})`);
      return v;
    }
    case 'u16': {
      const v = r.u16();
      if (v === 0 && (spec.name === 'receiveMaximum' || spec.name === 'topicAlias')) throw new ProtocolError(PROTOCOL_ERROR, `property ${spec.name} must not be 0`);
      return v;
    }
    case 'u32': {
      const v = r.u32();
      if (v === 0 && spec.name === 'maximumPacketSize') throw new ProtocolError(PROTOCOL_ERROR, 'property maximumPacketSize must not be 0');
      return v;
    }
    case 'varint': {
      const v = r.varint();
      if (v === 0) throw new ProtocolError(PROTOCOL_ERROR, 'subscription identifier must not be 0');
      return v;
    }
    case 'utf8':
      return r.utf8();
    case 'binary':
      return Buffer.from(r.binary());
    case 'pair':
      return [r.utf8(), r.utf8()];
  }
}

/** The encoded size of a property list, without its own length prefix. */
export function propertiesLength(props: Properties | undefined): number {
  if (props === undefined) return 0;
  let n = 0;
  for (const key in props) {
    const value = (props as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const spec = BY_NAME.get(key);
    if (spec === undefined) continue;
    if (spec.kind === 'pair') {
      for (const [k, v] of value as UserProperties) n += 1 + 2 + utf8Length(k) + 2 + utf8Length(v);
    } else if (spec.name === 'subscriptionIdentifiers') {
      for (const id of value as number[]) n += 1 + varintSize(id);
    } else {
      n += 1 + valueLength(spec.kind, value);
    }
  }
  return n;
}

function valueLength(kind: Kind, value: unknown): number {
  switch (kind) {
    case 'byte':
      return 1;
    case 'u16':
      return 2;
    case 'u32':
      return 4;
    case 'varint':
      return varintSize(value as number);
    case 'utf8':
      return 2 + utf8Length(value as string);
    case 'binary':
      return 2 + (value as Buffer).length;
    default:
      return 0;
  }
}

/** Writes the property list with its length prefix (`length` from propertiesLength). */
export function writeProperties(w: Writer, props: Properties | undefined, length: number): void {
  w.varint(length);
  if (props === undefined || length === 0) return;
  for (const key in props) {
    const value = (props as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const spec = BY_NAME.get(key);
    if (spec === undefined) continue;
    if (spec.kind === 'pair') {
      for (const [k, v] of value as UserProperties) {
        w.byte(spec.id);
        w.utf8(k, utf8Length(k));
        w.utf8(v, utf8Length(v));
      }
    } else if (spec.name === 'subscriptionIdentifiers') {
      for (const id of value as number[]) {
        w.byte(spec.id);
        w.varint(id);
      }
    } else {
      w.byte(spec.id);
      writeValue(w, spec.kind, value);
    }
  }
}

function writeValue(w: Writer, kind: Kind, value: unknown): void {
  switch (kind) {
    case 'byte':
      w.byte(value as number);
      return;
    case 'u16':
      w.u16(value as number);
      return;
    case 'u32':
      w.u32(value as number);
      return;
    case 'varint':
      w.varint(value as number);
      return;
    case 'utf8':
      w.utf8(value as string, utf8Length(value as string));
      return;
    case 'binary':
      w.binary(value as Buffer);
      return;
    default:
      return;
  }
}
