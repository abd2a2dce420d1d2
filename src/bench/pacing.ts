/**
 * How many messages publisher `p` of `publishers` should have sent `elapsedMs` into a run at
 * `perPublisherRate` messages per second. Publishers are spread evenly over one interval instead
 * of all sending at the same instant, as independent devices would: with a common schedule every
 * publisher's message left in one burst, and the latency measured was mostly the wait behind the
 * rest of the burst.
 */
export function dueCount(elapsedMs: number, perPublisherRate: number, p: number, publishers: number): number {
  return Math.floor((elapsedMs / 1000) * perPublisherRate + p / publishers);
}

/**
 * The publisher whose message is the run's `j`-th (from 1) in dueCount's schedule: message j is
 * due at j / rate seconds, and publisher p's k-th at (k * publishers - p) / rate.
 */
export function publisherOf(j: number, publishers: number): number {
  return (publishers - (j % publishers)) % publishers;
}
