/** Something with a deadline (absolute ms) that may move later without telling the wheel. */
export interface WheelEntry {
  deadline: number;
}

const SLOTS = 256;

/**
 * Keep-alive and connect timeouts for many connections without a timer each: entries sit in
 * slots by deadline tick; `advance` looks only at the slots whose time has come. A connection
 * pushes its deadline later on every packet without touching the wheel; when its old slot comes
 * up it is simply re-filed under the new deadline.
 */
export class TimerWheel<E extends WheelEntry> {
  private readonly tickMs: number;
  private readonly slots: Array<Set<E>> = Array.from({ length: SLOTS }, () => new Set<E>());
  private readonly slotOf = new Map<E, number>();
  private cursor: number | undefined;

  constructor(tickMs: number) {
    this.tickMs = tickMs;
  }

  get size(): number {
    return this.slotOf.size;
  }

  add(entry: E): void {
    this.remove(entry);
    this.file(entry);
  }

  remove(entry: E): void {
    const slot = this.slotOf.get(entry);
    if (slot === undefined) return;
    (this.slots[slot] as Set<E>).delete(entry);
    this.slotOf.delete(entry);
  }

  /** Calls `onExpire` once for every entry whose deadline is at or before `now`. */
  advance(now: number, onExpire: (entry: E) => void): void {
    const target = Math.floor(now / this.tickMs);
    let tick = this.cursor ?? target;
    // never scan more than one turn of the wheel: every slot is then visited once
    if (target - tick >= SLOTS) tick = target - SLOTS + 1;
    for (; tick <= target; tick++) {
      const slot = ((tick % SLOTS) + SLOTS) % SLOTS;
      const set = this.slots[slot] as Set<E>;
      if (set.size === 0) continue;
      for (const entry of [...set]) {
        if (entry.deadline <= now) {
          set.delete(entry);
          this.slotOf.delete(entry);
          onExpire(entry);
        } else if (this.slotIndex(entry.deadline) !== slot) {
          set.delete(entry);
          this.slotOf.delete(entry);
          this.file(entry);
        }
      }
    }
    // the current tick's slot may hold deadlines later in this same tick: look at it again next time
    this.cursor = target;
  }

  private slotIndex(deadline: number): number {
    const tick = Math.floor(deadline / this.tickMs);
    return ((tick % SLOTS) + SLOTS) % SLOTS;
  }

  private file(entry: E): void {
    const slot = this.slotIndex(entry.deadline);
    (this.slots[slot] as Set<E>).add(entry);
    this.slotOf.set(entry, slot);
  }
}
