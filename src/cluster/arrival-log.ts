/**
 * A node in one of its runs, as an ArrivalLog sender: a node restarted numbers the messages it
 * forwards from 1 again. A sender of an older version names no run ('').
 */
export function senderOf(from: string, run: string): string {
  return `${from}\n${run}`;
}

/** Where each sender's messages stood in an ArrivalLog when a mark was made. */
export type ArrivalMark = Map<string, number>;

interface SenderLog {
  /** numbers of the messages taken, in the order taken (each sender's numbers only grow) */
  numbers: number[];
  /** how many were dropped from the front */
  dropped: number;
}

/**
 * The forwarded messages a node took, by sender and number, kept while marks are held: whether a
 * message was taken since a mark is a binary search. A sender numbers its messages in the order it
 * forwards them and the inbox keeps that order, so each sender's numbers only grow. A number costs
 * 8 bytes at most, and what no held mark reaches is dropped.
 */
export class ArrivalLog {
  private readonly senders = new Map<string, SenderLog>();
  private readonly marks = new Set<ArrivalMark>();

  /** whether marks are held (messages are logged only then) */
  get active(): boolean {
    return this.marks.size > 0;
  }

  /** A message the sender numbered `n` was taken. */
  record(sender: string, n: number): void {
    let log = this.senders.get(sender);
    if (log === undefined) {
      log = { numbers: [], dropped: 0 };
      this.senders.set(sender, log);
    }
    const last = log.numbers[log.numbers.length - 1];
    if (last !== undefined && n <= last) {
      // the sender restarted and numbers from 1 again: what it sent before cannot be asked about any more
      log.dropped += log.numbers.length;
      log.numbers = [];
    }
    log.numbers.push(n);
  }

  /** Marks where every sender stands now; held until released. */
  mark(): ArrivalMark {
    const mark: ArrivalMark = new Map();
    for (const [sender, log] of this.senders) mark.set(sender, log.dropped + log.numbers.length);
    this.marks.add(mark);
    return mark;
  }

  /** Whether the sender's message `n` was taken after `mark` was made. */
  takenSince(mark: ArrivalMark, sender: string, n: number): boolean {
    const log = this.senders.get(sender);
    if (log === undefined) return false;
    const a = log.numbers;
    let lo = Math.max(0, (mark.get(sender) ?? 0) - log.dropped);
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((a[mid] as number) < n) lo = mid + 1;
      else hi = mid;
    }
    return lo < a.length && a[lo] === n;
  }

  /** The mark is no longer needed: what no held mark reaches is dropped. */
  release(mark: ArrivalMark): void {
    this.marks.delete(mark);
    if (this.marks.size === 0) {
      this.senders.clear();
      return;
    }
    for (const [sender, log] of this.senders) {
      let keepFrom = log.dropped + log.numbers.length;
      for (const m of this.marks) keepFrom = Math.min(keepFrom, m.get(sender) ?? 0);
      const drop = keepFrom - log.dropped;
      if (drop <= 0) continue;
      log.numbers.splice(0, drop);
      log.dropped = keepFrom;
    }
  }
}
