/**
 * Whether a topic is one of the broker's own $SYS topics: clients may not publish there, the
 * retained limit leaves them out, and each cluster node keeps its own. Other `$` topics are the
 * clients' to use ($aws/..., $iothub/...), matched only by filters starting with `$` too.
 */
export function isSysTopic(topic: string): boolean {
  return topic.charCodeAt(0) === 0x24 /* $ */ && (topic.length === 4 || topic.charCodeAt(4) === 0x2f /* / */) && topic.startsWith('$SYS');
}
