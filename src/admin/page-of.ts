/**
 * The keys at places [offset, offset + limit) of `keys` in sorted order, found by selection rather
 * than by sorting them all. A broker may hold a million sessions or retained topics; sorting every
 * key, and building a row for each, to serve one page held the event loop (and every client's
 * traffic) for about two seconds. A page near the front comes from a bounded heap of the smallest
 * keys, O(n log k); a page further in from two quickselects, O(n) on average, that bound it.
 */
export function pageOf(keys: readonly string[], offset: number, limit: number): string[] {
  if (offset >= keys.length || limit === 0) return [];
  if ((offset + limit) * 16 < keys.length) return smallest(keys, offset + limit).slice(offset);
  const a = keys.slice();
  const end = Math.min(offset + limit, a.length);
  select(a, offset, 0, a.length - 1);
  select(a, end - 1, offset, a.length - 1);
  return a.slice(offset, end).sort(compare);
}

/** Moves the key of sorted rank `k` to a[k], the smaller ones before it and the larger after (within lo..hi). */
function select(a: string[], k: number, lo: number, hi: number): void {
  while (hi > lo) {
    // a random pivot: no order of keys (sorted ones, say) makes this quadratic
    const pivot = a[lo + Math.floor(Math.random() * (hi - lo + 1))] as string;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while ((a[i] as string) < pivot) i++;
      while ((a[j] as string) > pivot) j--;
      if (i <= j) {
        const t = a[i] as string;
        a[i++] = a[j] as string;
        a[j--] = t;
      }
    }
    // a[lo..j] <= pivot <= a[i..hi], and what lies between equals the pivot
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

const compare = (x: string, y: string): number => (x < y ? -1 : x > y ? 1 : 0);

/** The `k` smallest keys, sorted: a max-heap of the smallest seen so far. */
function smallest(keys: readonly string[], k: number): string[] {
  const heap: string[] = [];
  for (const key of keys) {
    if (heap.length < k) {
      let i = heap.push(key) - 1;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if ((heap[parent] as string) >= key) break;
        heap[i] = heap[parent] as string;
        i = parent;
      }
      heap[i] = key;
    } else if (key < (heap[0] as string)) {
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= k) break;
        if (child + 1 < k && (heap[child + 1] as string) > (heap[child] as string)) child++;
        if ((heap[child] as string) <= key) break;
        heap[i] = heap[child] as string;
        i = child;
      }
      heap[i] = key;
    }
  }
  return heap.sort(compare);
}
