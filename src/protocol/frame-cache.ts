import type { Properties, ProtocolVersion, QoS } from '../codec/packets.js';
import { encodePublishFrame, publishFrameSize, type PublishFrame } from '../codec/publish-frame.js';
import { remainingExpiry, type Clock, type Message } from '../session/message.js';

/**
 * The encoded PUBLISH for one (version, QoS, retain) shape of a message, built once and shared by
 * every subscriber of that shape. 3.1 and 3.1.1 share one encoding; 5.0 frames carry the remaining
 * Message Expiry Interval, so they are rebuilt when that number of seconds changes.
 * Deliveries that carry per-subscriber properties (subscription identifiers) are encoded on their own.
 */
export function frameFor(
  message: Message,
  version: ProtocolVersion,
  qos: QoS,
  retain: boolean,
  subscriptionIds: number[] | undefined,
  clock: Clock,
): PublishFrame {
  const v5 = version === 5;
  const remaining = v5 ? remainingExpiry(message, clock) : -1;
  if (v5 && subscriptionIds !== undefined) {
    return encodePublishFrame(message.topic, message.payload, qos, retain, 5, outgoingProperties(message, remaining, subscriptionIds));
  }
  const slot = (v5 ? 6 : 0) + qos * 2 + (retain ? 1 : 0);
  if (v5 && remaining !== message.framesExpiry) {
    // the 5.0 frames carry the remaining expiry in seconds: rebuild them when it has changed
    if (message.frameSlot >= 6) {
      message.frame = undefined;
      message.frameSlot = -1;
    }
    const frames = message.frames;
    if (frames !== undefined) for (let i = 6; i < 12; i++) frames[i] = undefined;
    message.framesExpiry = remaining;
  }
  if (message.frameSlot === slot) return message.frame as PublishFrame;
  const first = message.frame === undefined;
  if (!first) {
    const cached = message.frames?.[slot];
    if (cached !== undefined) return cached;
  }
  const frame = encodePublishFrame(
    message.topic,
    message.payload,
    qos,
    retain,
    version,
    v5 ? outgoingProperties(message, remaining, undefined) : undefined,
  );
  if (first) {
    message.frame = frame;
    message.frameSlot = slot;
  } else {
    (message.frames ??= new Array<PublishFrame | undefined>(12))[slot] = frame;
  }
  return frame;
}

function outgoingProperties(
  message: Message,
  remainingExpiry: number,
  subscriptionIds: number[] | undefined,
): Properties | undefined {
  const props = message.properties;
  if (remainingExpiry < 0 && subscriptionIds === undefined) return props;
  const out: Properties = { ...props };
  // [MQTT-3.3.2-6] the expiry sent on is what is left of the lifetime
  if (remainingExpiry >= 0) out.messageExpiryInterval = remainingExpiry;
  if (subscriptionIds !== undefined) out.subscriptionIdentifiers = subscriptionIds;
  return out;
}

/**
 * A PUBLISH using a topic alias: the topic in full with the alias the first time, the alias alone
 * (empty topic) after that. Encoded per connection; only the small head is new, the payload is
 * shared. Undefined when that frame would be over `maxSize`: the alias property can grow the first
 * frame by 5 bytes (3, and a byte more in each of two lengths), and a short topic's alias-only
 * frame can be larger than its full one; the frame without an alias is sent then. `alias` is asked
 * for only once the frame fits, so that no alias is assigned (perhaps taken from another topic)
 * for a frame that does not carry it.
 */
export function aliasedFrame(
  message: Message,
  qos: QoS,
  retain: boolean,
  subscriptionIds: number[] | undefined,
  clock: Clock,
  alias: number | (() => number),
  topicKnown: boolean,
  maxSize: number,
): PublishFrame | undefined {
  const remaining = remainingExpiry(message, clock);
  // every alias number is a two-byte integer: the size does not depend on which
  const properties: Properties = { ...outgoingProperties(message, remaining, subscriptionIds), topicAlias: 1 };
  const topic = topicKnown ? '' : message.topic;
  // [MQTT-3.1.2-24] (5.0)
  if (publishFrameSize(topic, message.payload.length, qos, 5, properties) > maxSize) return undefined;
  properties.topicAlias = typeof alias === 'number' ? alias : alias();
  return encodePublishFrame(topic, message.payload, qos, retain, 5, properties);
}
