import { Buffer, isUtf8 } from 'node:buffer';
import type { AckPacket, Properties, PublishPacket } from '../../codec/packets.js';
import { RC } from '../../codec/reason-codes.js';
import { createMessage, type Message } from '../../session/message.js';
import type { Session } from '../../session/session.js';
import { MatchMemo } from '../../topic/subscription-trie.js';
import { checkTopicName } from '../../topic/validate.js';
import type { Channel } from '../channel.js';
import { isPromise, settle } from '../maybe-promise.js';
import { isSysTopic } from '../../topic/sys-topic.js';
import { PublishQuota } from '../publish-quota.js';
import { afterCommit, closeUnacknowledged } from '../unacknowledged.js';
import { holdUntilStored, releaseStored } from '../outbound.js';

/**
 * Client-to-server PUBLISH. QoS 2 uses "store the packet id, deliver at once" (method B of the
 * spec's figure 4.3): the message is routed on the first PUBLISH and later duplicates with the same
 * id are only re-acknowledged until PUBREL frees it.
 */
export function handlePublish(ch: Channel, p: PublishPacket): Promise<void> | undefined {
  const settings = ch.broker.settings;
  const session = ch.session as Session;
  const v5 = ch.version === 5;

  if (p.qos > settings.maximumQoS) {
    // [MQTT-3.2.2-11]
    ch.closeWith(RC.QoSNotSupported, `QoS ${p.qos} is above the maximum QoS ${settings.maximumQoS}`);
    return undefined;
  }
  if (p.retain && !settings.retainAvailable) {
    // [MQTT-3.2.2-14]
    ch.closeWith(RC.RetainNotSupported, 'retained messages are not available');
    return undefined;
  }

  let topic = p.topic;
  if (v5) {
    const resolved = resolveTopicAlias(ch, p);
    if (resolved === undefined) return undefined;
    topic = resolved;
  }
  const invalid = checkTopicName(topic, settings);
  if (invalid !== null) {
    ch.closeWith(RC.TopicNameInvalid, `topic name ${invalid}`);
    return undefined;
  }

  const responseTopic = p.properties?.responseTopic;
  if (responseTopic !== undefined && checkTopicName(responseTopic, settings) !== null) {
    // [MQTT-3.3.2-14] (5.0) a Response Topic is a topic name: no wildcards
    ch.closeWith(RC.ProtocolError, `response topic ${checkTopicName(responseTopic, settings)}`);
    return undefined;
  }

  if (p.qos === 2 && session.incomingQos2.has(p.packetId as number)) {
    // [MQTT-4.3.3-9] a duplicate of a message already received: acknowledge, do not route again;
    // but not before the first copy's packet id is on disk (it may be a resend after a reconnect,
    // while that commit is under way or the disk is full), or a crash would lose the message
    const packetId = p.packetId as number;
    afterCommit(ch, session.journal === undefined ? undefined : ch.broker.committed(), () => ch.send({ type: 'pubrec', packetId }));
    return undefined;
  }
  if (p.qos > 0 && v5 && ch.pendingQos1 + session.incomingQos2.size >= settings.receiveMaximum) {
    // more unacknowledged QoS 1/2 publishes than the Receive Maximum we told the client (4.9)
    ch.closeWith(RC.ReceiveMaximumExceeded, 'receive maximum exceeded');
    return undefined;
  }
  if (p.qos === 1 && !v5 && ch.pendingQos1 >= settings.receiveMaximum) {
    // 3.1.1 has no Receive Maximum to tell a client that sends faster than the store commits or
    // other nodes take its messages: it is read no further until the latest acknowledgement under
    // way can go (its QoS 2 state is bounded by the packet id space, and PUBRELs must go on being read)
    const waiting = ch.ackWait;
    if (waiting !== undefined) {
      const resume = (): Promise<void> | undefined => (ch.state === 'connected' ? handlePublish(ch, p) : undefined);
      return waiting.then(resume, resume);
    }
  }

  // rate limits apply to well-formed publishes that are not resends of a QoS 2 message already taken;
  // a reload may switch them on or off while the client is connected
  if (PublishQuota.needed(settings)) {
    ch.publishQuota ??= new PublishQuota(settings, ch.broker.now());
    const size = p.payload.length + topic.length;
    if (v5 && settings.publishRateAction === 'refuse') {
      if (!ch.publishQuota.tryTake(size, ch.broker.now())) {
        ch.broker.counters.dropped.rateLimited++;
        acknowledge(ch, p, RC.QuotaExceeded, 'publish rate exceeded');
        return undefined;
      }
    } else {
      const wait = ch.publishQuota.charge(size, ch.broker.now());
      if (wait > 0) {
        ch.broker.counters.throttled++;
        ch.throttle(wait);
      }
    }
  }
  if (v5 && p.qos > 0 && p.retain && p.payload.length > 0 && !ch.broker.retainedHasRoom(topic)) {
    // 5.0 can say the retained limit was reached; the message is not half-accepted (sent but not
    // kept). QoS 0 has no acknowledgement to say it in: like a 3.1.1 one, it reaches the live
    // subscribers and is not retained, instead of vanishing without a word
    ch.broker.counters.retainedRefused++;
    acknowledge(ch, p, RC.QuotaExceeded, 'retained message limit reached');
    return undefined;
  }
  if (isSysTopic(topic)) {
    // $SYS is the broker's own: a client there could forge its figures. Other `$` topics are
    // open to clients, as in other brokers (device clouds name topics `$aws/...`, `$iothub/...`):
    // wildcards at the start of a filter still never match them ([MQTT-4.7.2-1])
    return refused(ch, p, RC.NotAuthorized);
  }
  if (v5 && p.properties?.payloadFormatIndicator === 1 && !isUtf8(p.payload)) {
    // [MQTT-3.3.2-4] the payload must be the UTF-8 it claims to be
    return refused(ch, p, RC.PayloadFormatInvalid);
  }

  const properties = v5 ? forwardedProperties(p.properties) : undefined;
  const message = createMessage(topic, p.payload, p.qos, p.retain, properties, ch.broker, ch.client.id);
  const verdict = ch.broker.authorizePublish(ch.client, message);
  if (isPromise(verdict)) {
    if (p.qos === 1) ch.pendingQos1++;
    return settle(verdict).then((ok) => {
      if (p.qos === 1) ch.pendingQos1--;
      if (ch.state !== 'connected') return undefined;
      return ok ? accept(ch, p, message) : refused(ch, p, RC.NotAuthorized);
    });
  }
  return verdict ? accept(ch, p, message) : refused(ch, p, RC.NotAuthorized);
}

function accept(ch: Channel, p: PublishPacket, message: Message): undefined {
  ch.broker.messageReceived(message, ch.client);
  const session = ch.session as Session;
  // a QoS 2 id is recorded before the commit, so a resend before PUBREC is known as a duplicate
  if (p.qos === 2) session.markIncomingQos2(p.packetId as number, true);
  const memo = (ch.matchMemo ??= new MatchMemo());
  const stored = p.qos === 2 && session.journal !== undefined && ch.broker.onDisk ? publishHeld(ch, message, memo) : ch.broker.publish(message, memo);
  if (stored === undefined) {
    acknowledge(ch, p, RC.Success);
    return undefined;
  }
  // Acknowledge only once the message is on disk (and, in a cluster, with the other nodes). The
  // channel goes on reading meanwhile, so every publish of this turn shares one commit;
  // acknowledgements leave in the order commits finish.
  if (p.qos === 1) ch.pendingQos1++;
  ch.ackWait = stored;
  void stored.then(
    () => {
      if (p.qos === 1) ch.pendingQos1--;
      if (ch.ackWait === stored) ch.ackWait = undefined;
      if (ch.state === 'connected') acknowledge(ch, p, RC.Success);
    },
    (err: unknown) => {
      if (p.qos === 1) ch.pendingQos1--;
      if (ch.ackWait === stored) ch.ackWait = undefined;
      // not on disk or not with the other nodes: no acknowledgement; the client resends after reconnecting
      closeUnacknowledged(ch, err);
    },
  );
  return undefined;
}

/**
 * Exactly once across a crash: a QoS 2 message from a persistent session reaches the connected
 * subscribers only once the commit that records it (and its packet id, and their inflight entries)
 * is over. Routed at once, its entries go into that commit, but the writes to their sockets wait
 * (Outbound holds them): a broker killed before the commit comes back without the packet id, so
 * the publisher, never sent PUBREC, sends the message again and it is taken as new; had a subscriber
 * had it already, it would get it twice. A commit that fails lets the writes go all the same: the
 * packet id is marked in memory, so this broker would take a resend as a duplicate and the message
 * would otherwise be lost; the publisher's connection is closed as for any failed commit.
 * Publishers whose session ends with their connection do not resend after a restart, and QoS 0/1
 * (duplicates allowed) never wait. In a cluster, the other nodes are sent the message once that
 * commit is over too, and on a failed one all the same (see RedisCluster.routeKeptBack).
 */
function publishHeld(ch: Channel, message: Message, memo: MatchMemo): void | Promise<void> {
  holdUntilStored(message);
  let stored: void | Promise<void>;
  try {
    stored = ch.broker.publish(message, memo);
  } catch (err) {
    releaseStored(message);
    throw err;
  }
  const disk = ch.broker.committed();
  const release = (): void => releaseStored(message);
  if (disk === undefined) release();
  else void disk.then(release, release);
  return stored;
}

/**
 * A publish the broker will not route. 5.0 says why in the ack; 3.1.1 has no way to say it, so
 * [MQTT-3.3.5-2] it is acknowledged as usual and dropped.
 */
function refused(ch: Channel, p: PublishPacket, reasonCode: number): undefined {
  ch.broker.counters.dropped.notAuthorized++;
  acknowledge(ch, p, ch.version === 5 ? reasonCode : RC.Success, reasonCode === RC.PayloadFormatInvalid ? 'payload is not valid UTF-8' : 'not authorized');
  return undefined;
}

function acknowledge(ch: Channel, p: PublishPacket, reasonCode: number, reason?: string): void {
  if (p.qos === 0) return;
  const packetId = p.packetId as number;
  if (p.qos === 1) {
    // [MQTT-4.3.2-4]
    if (reasonCode === RC.Success) ch.sendAck(0x40, packetId);
    else ch.send(ackPacket('puback', packetId, reasonCode, reason));
    return;
  }
  // [MQTT-4.3.3-8] the id waits for PUBREL only after a success, and accept() recorded it already;
  // a PUBREC with an error code ends the exchange
  if (reasonCode === RC.Success) ch.sendAck(0x50, packetId);
  else ch.send(ackPacket('pubrec', packetId, reasonCode, reason));
}

/**
 * PUBREL from the client: the QoS 2 packet id is released ([MQTT-4.3.3-11]). An id the session
 * does not hold was released already: the session keeps incoming QoS 2 ids across reconnects and
 * restarts, so this is a PUBREL sent again because its PUBCOMP was lost with the connection. The
 * exchange is over and the message went out once, so the PUBCOMP says success, as Mosquitto's does:
 * MQTT.js fails the publish of a PUBCOMP with 0x92 (Packet Identifier not found), and an
 * application that then publishes again makes a duplicate of a message delivered exactly once.
 */
export function handlePubrel(ch: Channel, p: AckPacket): void {
  const known = (ch.session as Session).markIncomingQos2(p.packetId, false);
  // PUBCOMP only once the released id is on disk: a restart must not take a new message for a resend
  afterCommit(ch, known ? ch.broker.committed() : undefined, () => ch.sendAck(0x70, p.packetId));
}

function ackPacket(type: AckPacket['type'], packetId: number, reasonCode: number, reason?: string): AckPacket {
  if (reasonCode === 0) return { type, packetId };
  return reason === undefined ? { type, packetId, reasonCode } : { type, packetId, reasonCode, properties: { reasonString: reason } };
}

/** Returns the topic to publish to, or undefined after closing the connection. */
function resolveTopicAlias(ch: Channel, p: PublishPacket): string | undefined {
  const alias = p.properties?.topicAlias;
  if (alias === undefined) {
    if (p.topic.length === 0) {
      ch.closeWith(RC.ProtocolError, 'empty topic name without a topic alias');
      return undefined;
    }
    return p.topic;
  }
  if (alias === 0 || alias > ch.broker.settings.topicAliasMaximum) {
    // [MQTT-3.3.2-9] [MQTT-3.3.2-10]
    ch.closeWith(RC.TopicAliasInvalid, `topic alias ${alias} is out of range`);
    return undefined;
  }
  if (p.topic.length > 0) {
    const previous = ch.topicAliases.get(alias);
    if (previous === p.topic) return p.topic;
    // the topic string is the decoder's own copy, not a view into a read buffer: what it costs to
    // keep is its length, which its UTF-8 byte count bounds
    const bytes = ch.topicAliasBytes + Buffer.byteLength(p.topic) - (previous === undefined ? 0 : Buffer.byteLength(previous));
    const max = ch.broker.settings.maxTopicAliasBytes;
    if (max > 0 && bytes > max) {
      ch.closeWith(RC.QuotaExceeded, `topic aliases would hold ${bytes} bytes of topic names, over the limit of ${max}`);
      return undefined;
    }
    ch.topicAliases.set(alias, p.topic);
    ch.topicAliasBytes = bytes;
    return p.topic;
  }
  const topic = ch.topicAliases.get(alias);
  if (topic === undefined) {
    ch.closeWith(RC.ProtocolError, `topic alias ${alias} was never set`);
    return undefined;
  }
  return topic;
}

/** The properties that travel with the message to subscribers. */
function forwardedProperties(props: Properties | undefined): Properties | undefined {
  if (props === undefined) return undefined;
  if (props.topicAlias === undefined && props.subscriptionIdentifiers === undefined) return props;
  const { topicAlias: _a, subscriptionIdentifiers: _s, ...rest } = props;
  return Object.keys(rest).length > 0 ? rest : undefined;
}
