import type { Session } from '../session/session.js';

/** setTimeout holds at most ~24.8 days; a later deadline is waited for in steps. */
const MAX_WAIT_MS = 2 ** 31 - 1;

/**
 * Sessions ended in one turn at most. Deadlines fall together in the thousands (sessions restored
 * after a restart, devices cut off by one outage), and ending 200,000 sessions at once held the
 * event loop, and every client's traffic, for 330-560 ms; 1,000 take about 2 ms.
 */
export const MAX_DUE_PER_TURN = 1000;

/**
 * Offline sessions by the time they expire (`expiresAt`), with one timer for the earliest: a
 * binary min-heap whose members know their place (`Session.expirySlot`), so a session whose client
 * returns leaves it in O(log n). A timer per session cost about 310 bytes of heap each (the
 * Timeout, its closure, a map entry): some 300 MB for a million offline devices.
 */
export class ExpirySchedule {
  private readonly heap: Session[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  /** set while more sessions are due than one turn ends */
  private next: NodeJS.Immediate | undefined;
  private readonly onDue: (session: Session) => void;

  constructor(onDue: (session: Session) => void) {
    this.onDue = onDue;
  }

  get size(): number {
    return this.heap.length;
  }

  /** Schedules the session for its `expiresAt`; a session already scheduled moves to the new time. */
  add(session: Session): void {
    if (session.expirySlot >= 0) this.remove(session);
    session.expirySlot = this.heap.length;
    this.heap.push(session);
    this.up(session.expirySlot);
    this.arm();
  }

  remove(session: Session): void {
    const i = session.expirySlot;
    if (i < 0) return;
    session.expirySlot = -1;
    const last = this.heap.pop() as Session;
    if (last === session) return;
    this.heap[i] = last;
    last.expirySlot = i;
    this.down(i);
    this.up(last.expirySlot);
    // the timer stays: if it was for this session, it finds nothing due and waits for the next
  }

  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.next !== undefined) clearImmediate(this.next);
    this.timer = undefined;
    this.next = undefined;
    this.timerAt = Infinity;
    for (const s of this.heap) s.expirySlot = -1;
    this.heap.length = 0;
  }

  /** Takes out, earliest first, the sessions due by `now`, at most `max` of them. */
  takeDue(now: number, max = Infinity): Session[] {
    const due: Session[] = [];
    for (let head = this.heap[0]; head !== undefined && at(head) <= now && due.length < max; head = this.heap[0]) {
      this.remove(head);
      due.push(head);
    }
    return due;
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    this.next = undefined;
    const now = Date.now();
    const due = this.takeDue(now, MAX_DUE_PER_TURN);
    for (const session of due) this.onDue(session);
    const head = this.heap[0];
    if (due.length === MAX_DUE_PER_TURN && head !== undefined && at(head) <= now) {
      // the rest after the I/O that waited on this turn
      this.next = setImmediate(this.fire);
      this.next.unref();
      return;
    }
    this.arm();
  };

  /** Keeps one timer, for the earliest deadline. */
  private arm(): void {
    const head = this.heap[0];
    if (head === undefined || this.next !== undefined) return;
    const due = at(head);
    if (this.timer !== undefined && this.timerAt <= due) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(this.fire, Math.max(0, Math.min(due - Date.now(), MAX_WAIT_MS)));
    this.timer.unref();
    this.timerAt = due;
  }

  private up(i: number): void {
    const heap = this.heap;
    const s = heap[i] as Session;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as Session;
      if (at(p) <= at(s)) break;
      heap[i] = p;
      p.expirySlot = i;
      i = parent;
    }
    heap[i] = s;
    s.expirySlot = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const s = heap[i] as Session;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && at(heap[child + 1] as Session) < at(heap[child] as Session)) child++;
      const c = heap[child] as Session;
      if (at(c) >= at(s)) break;
      heap[i] = c;
      c.expirySlot = i;
      i = child;
    }
    heap[i] = s;
    s.expirySlot = i;
  }
}

function at(session: Session): number {
  return session.expiresAt ?? Infinity;
}
