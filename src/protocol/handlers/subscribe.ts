import { Buffer } from 'node:buffer';
import type { Packet, QoS, SubscribePacket, SubscriptionRequest } from '../../codec/packets.js';
import { RC, SUBACK_FAILURE_V4 } from '../../codec/reason-codes.js';
import type { Session, Subscription } from '../../session/session.js';
import { parseSharedFilter } from '../../topic/shared.js';
import { checkTopicFilter } from '../../topic/validate.js';
import type { Channel } from '../channel.js';
import { isPromise, settle } from '../maybe-promise.js';
import { afterCommit } from '../unacknowledged.js';

interface Checked {
  request: SubscriptionRequest;
  /** a failure reason code, or undefined when the filter may be subscribed */
  failure: number | undefined;
  subscription: Subscription | undefined;
  /** why a QuotaExceeded refusal was made, for the reason string */
  quota?: string;
}

/** What this packet adds to the session so far, so that the quotas count it as it goes. */
interface Adding {
  filters: Set<string>;
  bytes: number;
}

/**
 * SUBSCRIBE: check each filter, ask the authorizer, add the subscriptions, answer with one SUBACK
 * code per filter in order ([MQTT-3.8.4-1] [MQTT-3.9.3-1]), then send matching retained messages.
 */
export function handleSubscribe(ch: Channel, p: SubscribePacket): Promise<void> | undefined {
  const settings = ch.broker.settings;
  const subscriptionId = p.properties?.subscriptionIdentifiers?.[0];
  if (subscriptionId !== undefined && !settings.subscriptionIdentifiersAvailable) {
    // CONNACK told the client they are not supported
    ch.closeWith(RC.SubscriptionIdentifiersNotSupported, 'subscription identifiers are not supported');
    return undefined;
  }

  const checked: Checked[] = [];
  const verdicts: Array<boolean | Promise<boolean>> = [];
  let anyAsync = false;
  const adding: Adding = { filters: new Set(), bytes: 0 };
  for (const request of p.subscriptions) {
    const c = check(ch, request, subscriptionId, adding);
    if (c === 'close') return undefined;
    checked.push(c);
    if (c.failure !== undefined) {
      verdicts.push(false);
      continue;
    }
    const verdict = ch.broker.authorizeSubscribe(ch.client, { topicFilter: request.topicFilter, qos: request.qos });
    if (isPromise(verdict)) anyAsync = true;
    verdicts.push(verdict);
  }

  if (!anyAsync) {
    finish(ch, p.packetId, checked, verdicts as boolean[]);
    return undefined;
  }
  return Promise.all(verdicts.map((v) => (isPromise(v) ? settle(v) : v))).then((results) => {
    if (ch.state === 'connected') finish(ch, p.packetId, checked, results);
  });
}

function check(ch: Channel, request: SubscriptionRequest, subscriptionId: number | undefined, adding: Adding): Checked | 'close' {
  const settings = ch.broker.settings;
  const v5 = ch.version === 5;
  let topicFilter = request.topicFilter;
  let shareGroup: string | undefined;
  const shared = parseSharedFilter(request.topicFilter);
  if (typeof shared === 'string') {
    return { request, failure: RC.TopicFilterInvalid, subscription: undefined };
  }
  if (shared !== null) {
    if (!settings.sharedSubscriptionAvailable) {
      return { request, failure: RC.SharedSubscriptionsNotSupported, subscription: undefined };
    }
    if (v5 && request.noLocal) {
      // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error
      ch.closeWith(RC.ProtocolError, 'No Local set on a shared subscription');
      return 'close';
    }
    topicFilter = shared.filter;
    shareGroup = shared.group;
  }
  if (checkTopicFilter(topicFilter, settings) !== null) {
    return { request, failure: RC.TopicFilterInvalid, subscription: undefined };
  }
  if (!settings.wildcardSubscriptionAvailable && /[+#]/.test(topicFilter)) {
    return { request, failure: RC.WildcardSubscriptionsNotSupported, subscription: undefined };
  }
  const session = ch.session as Session;
  // a filter already held is replaced in place and costs nothing more, so these refuse new ones only
  if (!session.subscriptions.has(request.topicFilter) && !adding.filters.has(request.topicFilter)) {
    if (session.subscriptions.size + adding.filters.size >= settings.maxSubscriptionsPerClient) {
      return { request, failure: RC.QuotaExceeded, subscription: undefined };
    }
    // the filter as sent, $share/{group}/ included: that is the string the session keeps
    const bytes = Buffer.byteLength(request.topicFilter);
    const max = settings.maxSubscriptionBytes;
    if (max > 0 && session.subscriptionBytes + adding.bytes + bytes > max) {
      return { request, failure: RC.QuotaExceeded, subscription: undefined, quota: `subscriptions would hold more than ${max} bytes of topic filters` };
    }
    // as new connections are, while the broker is over maxMemory: what a session holds is not taken back
    if (ch.broker.memoryFull) {
      return { request, failure: RC.QuotaExceeded, subscription: undefined, quota: 'the broker is over its memory limit' };
    }
    adding.filters.add(request.topicFilter);
    adding.bytes += bytes;
  }
  const qos = Math.min(request.qos, settings.maximumQoS) as QoS;
  return {
    request,
    failure: undefined,
    subscription: {
      filter: request.topicFilter,
      topicFilter,
      shareGroup,
      qos,
      noLocal: v5 && request.noLocal,
      retainAsPublished: v5 && request.retainAsPublished,
      retainHandling: v5 ? request.retainHandling : 0,
      subscriptionId,
    },
  };
}

function finish(ch: Channel, packetId: number, checked: Checked[], allowed: boolean[]): void {
  const v5 = ch.version === 5;
  const session = ch.session as Session;
  const reasonCodes: number[] = [];
  let firstFailure: string | undefined;
  const retainedFor: Array<{ sub: Subscription; existed: boolean }> = [];
  for (let i = 0; i < checked.length; i++) {
    const c = checked[i] as Checked;
    let failure = c.failure;
    if (failure === undefined && !allowed[i]) failure = RC.NotAuthorized;
    if (failure !== undefined || c.subscription === undefined) {
      reasonCodes.push(v5 ? (failure ?? RC.UnspecifiedError) : SUBACK_FAILURE_V4);
      firstFailure ??= `"${c.request.topicFilter}": ${c.quota ?? failureText(failure ?? RC.UnspecifiedError)}`;
      continue;
    }
    const sub = c.subscription;
    // [MQTT-3.8.4-3] a repeated filter replaces the existing subscription
    const existed = ch.broker.subscribe(session, sub);
    reasonCodes.push(sub.qos);
    retainedFor.push({ sub, existed });
  }
  // the channel drops the reason string when the client asked for no problem information or it would not fit
  const suback: Packet = { type: 'suback', packetId, reasonCodes, properties: v5 && firstFailure !== undefined ? { reasonString: firstFailure } : undefined };
  const send = (): void => ch.send(suback);
  // in a cluster, once the other nodes know of the subscriptions
  const shared = retainedFor.length > 0 ? ch.broker.subscriptionsShared() : undefined;
  if (retainedFor.length === 0 || session.journal === undefined || !ch.broker.onDisk) {
    afterCommit(ch, shared, send);
    oweRetained(ch, session, retainedFor);
    return;
  }
  // A session kept on disk is sent the SUBACK once its subscriptions are there and so is every
  // retained message they made owed (journaled a slice per turn): a broker killed after the SUBACK
  // must come back with both, as the client, finding its session present, will not subscribe
  // again ([MQTT-3.3.1-9] [MQTT-3.3.1-6]). Messages, retained ones included, may come first, as
  // the server is permitted to send them before the SUBACK (3.8.4).
  oweRetained(ch, session, retainedFor);
  const durable = ch.broker.committed();
  const owed = session.retainedStored();
  const waits = [durable, owed, shared].filter((p): p is Promise<void> => p !== undefined);
  afterCommit(ch, waits.length <= 1 ? waits[0] : Promise.all(waits).then(() => undefined), send);
}

/** Owes the client the retained messages each new subscription matched. */
function oweRetained(ch: Channel, session: Session, retainedFor: Array<{ sub: Subscription; existed: boolean }>): void {
  for (const { sub, existed } of retainedFor) {
    // No retained messages for shared subscriptions (5.0 section 4.8.2); Retain Handling 1 sends
    // them only for a new subscription, 2 never ([MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]).
    if (sub.shareGroup !== undefined) continue;
    if (sub.retainHandling === 2 || (sub.retainHandling === 1 && existed)) continue;
    let messages = ch.broker.retainedMessages(sub.topicFilter, session);
    if (sub.noLocal) messages = messages.filter((m) => m.senderId !== ch.client.id);
    if (messages.length === 0) continue;
    ch.outbound.oweRetained(sub.filter, messages, sub.qos, sub.subscriptionId === undefined ? undefined : [sub.subscriptionId]);
  }
}

function failureText(code: number): string {
  switch (code) {
    case RC.NotAuthorized:
      return 'not authorized';
    case RC.TopicFilterInvalid:
      return 'invalid topic filter';
    case RC.QuotaExceeded:
      return 'subscription limit reached';
    case RC.SharedSubscriptionsNotSupported:
      return 'shared subscriptions are not available';
    case RC.WildcardSubscriptionsNotSupported:
      return 'wildcard subscriptions are not available';
    default:
      return 'refused';
  }
}
