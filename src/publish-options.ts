import { Buffer, isUtf8 } from 'node:buffer';
import { LARGEST_PACKET, type Properties, type QoS, type UserProperties } from './codec/packets.js';
import { propertiesLength } from './codec/properties.js';
import { utf8Length, varintSize } from './codec/primitives.js';
import { checkTopicName, type TopicLimits } from './topic/validate.js';
import { refuseUnknownOptions } from './embed-options.js';

export interface PublishOptions {
  topic: string;
  /** a string is sent as UTF-8; a Uint8Array is used as it is, not copied */
  payload: Buffer | Uint8Array | string;
  qos?: QoS;
  retain?: boolean;
  /** what a PUBLISH may carry; topic aliases and subscription identifiers are the broker's to add */
  properties?: PublishProperties;
}

/** The 5.0 properties an application message carries from publisher to subscriber. */
export interface PublishProperties {
  payloadFormatIndicator?: 0 | 1;
  messageExpiryInterval?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer | Uint8Array;
  userProperties?: UserProperties;
}

/** A publish as the broker takes it: every field checked, the payload a Buffer. */
export interface CheckedPublish {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  properties: Properties | undefined;
}

const PUBLISH_OPTIONS: ReadonlyArray<keyof PublishOptions> = ['topic', 'payload', 'qos', 'retain', 'properties'];
const PUBLISH_PROPERTIES: ReadonlyArray<keyof PublishProperties> = ['payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'userProperties'];

/**
 * Properties of the Properties type that a PUBLISH from the broker must not carry: each
 * subscriber's connection chooses its own topic aliases and subscription identifiers (an alias
 * the subscriber never allowed is a protocol error it disconnects for), and the rest belong to
 * other packets, where the encoder would write them into a PUBLISH no client can read.
 */
const NOT_FOR_PUBLISH: Readonly<Record<string, string>> = {
  topicAlias: 'the broker chooses topic aliases for each subscriber',
  subscriptionIdentifiers: "the broker adds each subscriber's own subscription identifiers",
};

const U32 = 4294967295;
/** A UTF-8 string or binary field holds at most this many bytes (a two-byte length). */
const MAX_FIELD = 65535;
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Checks what an application passes to broker.publish: the same rules a client's PUBLISH is held
 * to, and the types a plain JavaScript caller may get wrong. Anything the encoder would write as is
 * must be right here, or every subscriber it reaches gets a packet it cannot read and disconnects,
 * and a retained one does the same to each later subscriber, across restarts.
 */
export function checkPublishOptions(options: unknown, limits: TopicLimits): CheckedPublish {
  if (typeof options !== 'object' || options === null) throw new TypeError(`publish: options must be an object with topic and payload (got ${shown(options)})`);
  refuseUnknownOptions(options, PUBLISH_OPTIONS, 'publish');
  const o = options as Record<string, unknown>;
  if (typeof o.topic !== 'string') throw new TypeError(`publish: topic must be a string (got ${shown(o.topic)})`);
  // a lone surrogate would go on the wire as U+FFFD: another topic than the one routed here
  const invalid = checkTopicName(o.topic, limits) ?? (LONE_SURROGATE.test(o.topic) ? 'is not well-formed Unicode (a lone surrogate)' : null);
  if (invalid !== null) throw new TypeError(`publish: invalid topic ${shown(o.topic)}: ${invalid}`);
  const payload = typeof o.payload === 'string' ? Buffer.from(o.payload, 'utf8') : bytesOf(o.payload, 'payload', 'a Buffer, a Uint8Array or a string', '; pass "" for an empty message');
  const qos = o.qos ?? 0;
  if (qos !== 0 && qos !== 1 && qos !== 2) {
    throw new (typeof qos === 'number' ? RangeError : TypeError)(`publish: qos must be 0, 1 or 2 (got ${shown(qos)})`);
  }
  const retain = o.retain ?? false;
  if (typeof retain !== 'boolean') throw new TypeError(`publish: retain must be true or false (got ${shown(retain)})`);
  const properties = o.properties === undefined ? undefined : checkProperties(o.properties, limits);
  if (properties?.payloadFormatIndicator === 1 && !isUtf8(payload)) {
    // [MQTT-3.3.2-4] as a client's PUBLISH is refused (0x99)
    throw new TypeError('publish: payloadFormatIndicator 1 says the payload is UTF-8, and it is not');
  }
  // the fixed header's Remaining Length has four bytes: no packet is larger, whoever receives it
  const propsLength = propertiesLength(properties);
  const remaining = 2 + utf8Length(o.topic) + 2 + varintSize(propsLength) + propsLength + payload.length;
  if (remaining > LARGEST_PACKET - 5) throw new RangeError(`publish: the message (${remaining} bytes) is larger than an MQTT packet can be`);
  return { topic: o.topic, payload, qos, retain, properties };
}

function checkProperties(value: unknown, limits: TopicLimits): Properties | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError(`publish: properties must be an object (got ${shown(value)})`);
  const given = value as Record<string, unknown>;
  const out: Properties = {};
  let any = false;
  for (const key of Object.keys(given)) {
    const v = given[key];
    if (!(PUBLISH_PROPERTIES as readonly string[]).includes(key)) {
      const why = NOT_FOR_PUBLISH[key];
      if (why !== undefined) throw new TypeError(`publish: properties.${key} may not be given: ${why}`);
      throw new TypeError(`publish: properties.${key} is not a property a PUBLISH carries (those are: ${PUBLISH_PROPERTIES.join(', ')})`);
    }
    if (v === undefined) continue;
    any = true;
    switch (key as keyof PublishProperties) {
      case 'payloadFormatIndicator':
        if (v !== 0 && v !== 1) throw new RangeError(`publish: properties.payloadFormatIndicator must be 0 or 1 (got ${shown(v)})`);
        out.payloadFormatIndicator = v;
        break;
      case 'messageExpiryInterval':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > U32) {
          throw new (typeof v === 'number' ? RangeError : TypeError)(`publish: properties.messageExpiryInterval must be an integer number of seconds from 0 to ${U32} (got ${shown(v)})`);
        }
        out.messageExpiryInterval = v;
        break;
      case 'contentType':
        out.contentType = stringField(v, 'properties.contentType');
        break;
      case 'responseTopic': {
        const topic = stringField(v, 'properties.responseTopic');
        // [MQTT-3.3.2-14] a Response Topic is a topic name: no wildcards
        const bad = checkTopicName(topic, limits);
        if (bad !== null) throw new TypeError(`publish: properties.responseTopic ${shown(topic)} ${bad}`);
        out.responseTopic = topic;
        break;
      }
      case 'correlationData': {
        const data = bytesOf(v, 'properties.correlationData', 'a Buffer or a Uint8Array');
        if (data.length > MAX_FIELD) throw new RangeError(`publish: properties.correlationData is longer than ${MAX_FIELD} bytes`);
        out.correlationData = data;
        break;
      }
      case 'userProperties':
        out.userProperties = userProperties(v);
        break;
    }
  }
  return any ? out : undefined;
}

/** A Buffer as it is, another Uint8Array as a Buffer over the same memory (not a copy). */
function bytesOf(value: unknown, name: string, kinds: string, hint = ''): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`publish: ${name} must be ${kinds} (got ${shown(value)})${hint}`);
}

/** A UTF-8 string field: [MQTT-1.5.4-1] well-formed, [MQTT-1.5.4-2] no U+0000, at most 65,535 bytes. */
function stringField(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new TypeError(`publish: ${name} must be a string (got ${shown(value)})`);
  if (value.includes('\u0000')) throw new TypeError(`publish: ${name} contains U+0000`);
  if (LONE_SURROGATE.test(value)) throw new TypeError(`publish: ${name} is not well-formed Unicode (a lone surrogate)`);
  if (utf8Length(value) > MAX_FIELD) throw new RangeError(`publish: ${name} is longer than ${MAX_FIELD} bytes`);
  return value;
}

function userProperties(value: unknown): UserProperties {
  const shape = 'an array of [name, value] pairs of strings, e.g. [["unit", "C"]]';
  if (!Array.isArray(value)) throw new TypeError(`publish: properties.userProperties must be ${shape} (got ${shown(value)})`);
  return value.map((pair: unknown, i) => {
    if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError(`publish: properties.userProperties[${i}] must be a [name, value] pair (got ${shown(pair)})`);
    return [stringField(pair[0], `properties.userProperties[${i}] name`), stringField(pair[1], `properties.userProperties[${i}] value`)] as [string, string];
  });
}

function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) return String(value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  const name = (value as object).constructor?.name;
  return name === undefined || name === 'Object' ? 'an object' : `a ${name}`;
}
