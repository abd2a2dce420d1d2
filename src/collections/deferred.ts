/** A promise settled from outside, by whoever finishes the work it stands for. */
export interface Deferred<E = unknown> {
  readonly promise: Promise<void>;
  readonly resolve: () => void;
  readonly reject: (err: E) => void;
}

/**
 * A new Deferred. Its rejection is marked handled: work that may fail is often awaited by nobody
 * (no publisher waited on that turn, nobody awaits the commit any more), and an unhandled
 * rejection would end the process; those that do await it still see the error.
 */
export function deferred<E = unknown>(): Deferred<E> {
  let resolve!: () => void;
  let reject!: (err: E) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}
