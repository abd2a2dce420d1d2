export function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** A hook's verdict: a rejection or a non-true value counts as a refusal. */
export function settle(verdict: Promise<boolean>): Promise<boolean> {
  return verdict.then(
    (ok) => ok === true,
    () => false,
  );
}
