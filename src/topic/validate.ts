import { Buffer } from 'node:buffer';
/** Limits on topic names and filters (bytes are UTF-8 bytes). */
export interface TopicLimits {
  maxTopicLength: number;
  maxTopicLevels: number;
}

/** The protocol's own ceiling: a UTF-8 string field holds at most 65535 bytes. */
const HARD_MAX = 65535;

/**
 * Checks a PUBLISH topic name: null when valid, else a short reason.
 * [MQTT-4.7.1-1] wildcards are not allowed in names, [MQTT-4.7.3-1] at least one character,
 * [MQTT-4.7.3-2] no U+0000, [MQTT-4.7.3-3] at most 65535 bytes. One pass over the characters.
 */
export function checkTopicName(name: string, limits: TopicLimits): string | null {
  const n = name.length;
  if (n === 0) return 'is empty';
  let levels = 1;
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2f /* / */) levels++;
    else if (c === 0x2b /* + */ || c === 0x23 /* # */) return 'contains a wildcard';
    else if (c === 0) return 'contains U+0000';
  }
  return checkSize(name, levels, limits);
}

/**
 * Checks a SUBSCRIBE/UNSUBSCRIBE topic filter: null when valid, else a short reason.
 * [MQTT-4.7.1-2] '#' alone or after '/', and last; [MQTT-4.7.1-3] '+' occupies a whole level.
 */
export function checkTopicFilter(filter: string, limits: TopicLimits): string | null {
  const n = filter.length;
  if (n === 0) return 'is empty';
  let levels = 1;
  for (let i = 0; i < n; i++) {
    const c = filter.charCodeAt(i);
    if (c === 0x2f) {
      levels++;
    } else if (c === 0x2b) {
      if ((i > 0 && filter.charCodeAt(i - 1) !== 0x2f) || (i + 1 < n && filter.charCodeAt(i + 1) !== 0x2f)) {
        return "'+' must occupy a whole level";
      }
    } else if (c === 0x23) {
      if (i + 1 !== n) return "'#' must be the last character";
      if (i > 0 && filter.charCodeAt(i - 1) !== 0x2f) return "'#' must occupy a whole level";
    } else if (c === 0) {
      return 'contains U+0000';
    }
  }
  return checkSize(filter, levels, limits);
}

function checkSize(topic: string, levels: number, limits: TopicLimits): string | null {
  // characters bound the byte length from below and, times 3, from above: skip the count when safe
  const max = Math.min(limits.maxTopicLength, HARD_MAX);
  if (topic.length > max || (topic.length * 3 > max && Buffer.byteLength(topic) > max)) return `is longer than ${max} bytes`;
  if (levels > limits.maxTopicLevels) return `has more than ${limits.maxTopicLevels} levels`;
  return null;
}
