import type { UnsubscribePacket } from '../../codec/packets.js';
import { RC } from '../../codec/reason-codes.js';
import type { Session } from '../../session/session.js';
import type { Channel } from '../channel.js';

/**
 * UNSUBSCRIBE: remove each filter that matches an existing subscription character for character
 * ([MQTT-3.10.4-1]) and answer with UNSUBACK ([MQTT-3.10.4-4]); 5.0 gives one code per filter.
 */
export function handleUnsubscribe(ch: Channel, p: UnsubscribePacket): void {
  const session = ch.session as Session;
  const reasonCodes: number[] = [];
  for (const filter of p.topicFilters) {
    const existed = ch.broker.unsubscribe(session, filter);
    reasonCodes.push(existed ? RC.Success : RC.NoSubscriptionExisted);
  }
  const missing = p.topicFilters.filter((_f, i) => reasonCodes[i] === RC.NoSubscriptionExisted);
  const properties = ch.version === 5 && missing.length > 0 ? { reasonString: `no subscription existed for "${missing[0]}"` } : undefined;
  ch.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: ch.version === 5 ? reasonCodes : [], properties });
}
