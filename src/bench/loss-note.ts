import type { QoS } from '../codec/index.js';
import type { Drops } from './broker-drops.js';

/**
 * One line on the messages a run lost, saying no more than the bench knows. It knows the broker
 * took them (acknowledged them, at QoS 1/2, or read them off a connection that stayed up) and
 * did not deliver them; why, only the broker knows, and says so only in its metrics (--metrics),
 * which count every client's drops, not only the run's.
 */
export function lossNote(lost: number, qos: QoS, drops: Drops | undefined): string | undefined {
  if (lost === 0) return undefined;
  const what = qos > 0 ? `the broker acknowledged ${lost} messages it never delivered: it dropped them` : `the broker did not deliver ${lost} of the messages sent to it (QoS 0 lets it drop them)`;
  if (drops === undefined) return `${what}; the bench cannot tell why (--metrics URL reads a Midge broker's reasons); if a subscriber's queue was full, raise its limit (limits.maxQueuedMessages, default 1000; Mosquitto: max_queued_messages) or use --rate`;
  const counted = Object.entries(drops).filter(([, n]) => n > 0);
  if (counted.length === 0) return `${what}; the broker's metrics counted no drops during the run`;
  const total = counted.reduce((sum, [, n]) => sum + n, 0);
  const byReason = counted
    .map(([reason, n]) => (reason === 'queueFull' ? `queueFull ${n} (a subscriber's queue was full: raise limits.maxQueuedMessages, default 1000, or use --rate)` : `${reason} ${n}`))
    .join(', ');
  return `${what}; the broker's metrics counted ${total} drops during the run: ${byReason}`;
}
