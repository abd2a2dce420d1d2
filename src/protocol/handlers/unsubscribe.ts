import type { UnsubscribePacket } from '../../codec/packets.js';
import { RC } from '../../codec/reason-codes.js';
import type { Session } from '../../session/session.js';
import { parseSharedFilter } from '../../topic/shared.js';
import { checkTopicFilter } from '../../topic/validate.js';
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
  let reason: string | undefined;
  for (const filter of p.topicFilters) {
    const existed = ch.broker.unsubscribe(session, filter);
    if (existed) {
      removed = true;
      reasonCodes.push(RC.Success);
      continue;
    }
    // a filter no SUBSCRIBE could have made is said to be invalid, not merely not subscribed
    const invalid = whyInvalid(filter, ch);
    reasonCodes.push(invalid === undefined ? RC.NoSubscriptionExisted : RC.TopicFilterInvalid);
    reason ??= invalid === undefined ? `no subscription existed for "${filter}"` : `the topic filter "${filter}" ${invalid}`;
  }
  const properties = ch.version === 5 && reason !== undefined ? { reasonString: reason } : undefined;
  const durable = removed && session.journal !== undefined ? ch.broker.committed() : undefined;
  afterCommit(ch, durable, () => ch.send({ type: 'unsuback', packetId: p.packetId, reasonCodes: ch.version === 5 ? reasonCodes : [], properties }));
}

/** What makes `filter` one no subscription can have (as SUBSCRIBE checks it), or undefined. */
function whyInvalid(filter: string, ch: Channel): string | undefined {
  const shared = parseSharedFilter(filter);
  if (typeof shared === 'string') return shared;
  return checkTopicFilter(shared === null ? filter : shared.filter, ch.broker.settings) ?? undefined;
}
