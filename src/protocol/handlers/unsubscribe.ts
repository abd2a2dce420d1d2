import type { UnsubscribePacket } from '../../codec/packets.js';
import { RC } from '../../codec/reason-codes.js';
import type { Session } from '../../session/session.js';
import type { Channel } from '../channel.js';
import { afterCommit } from '../unacknowledged.js';

/**
 * UNSUBSCRIBE: remove each filter that matches an existing subscription character for character
 * ([MQTT-3.10.4-1]) and answer with UNSUBACK ([MQTT-3.10.4-4]); 5.0 gives one code per filter.
 * Nothing more is sent for the filters from now on ([MQTT-3.10.4-2]); a session kept on disk has
 * its UNSUBACK wait for the commit that removes them, so that a crash after it cannot bring them back.
 */
export function handleUnsubscribe(ch: Channel, p: UnsubscribePacket): void {
  const session = ch.session as Session;
  const reasonCodes: number[] = [];
  let removed = false;
  for (const filter of p.topicFilters) {
    const existed = ch.broker.unsubscribe(session, filter);
    if (existed) removed = true;
    reasonCodes.push(existed ? RC.Success : RC.NoSubscriptionExisted);
  }
  const missing = p.topicFilters.filter((_f, i) => reasonCodes[i] === RC.NoSubscriptionExisted);
  const properties = ch.version === 5 && missing.length > 0 ? { reasonString: `no subscription existed for "${missing[0]}"` } : undefined;
  const durable = removed && session.journal !== undefined ? ch.broker.committed() : undefined;
  afterCommit(ch, durable, () => ch.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: ch.version === 5 ? reasonCodes : [], properties }));
}
