import { isPromise } from '../protocol/maybe-promise.js';

type Listener = (...args: never[]) => unknown;

/**
 * The application's event listeners, each wrapped so that a failure is reported instead of thrown
 * into the broker. Events are told from inside the handling of a packet: a listener that throws
 * would otherwise end the process (or at least the handling of that packet), and one that returns a
 * rejected promise would end it as an unhandled rejection. An observer's mistake is logged; the
 * broker and the message go on.
 */
export class ListenerGuards {
  /** event -> listener -> its wrappers (a listener added twice is called twice, as EventEmitter does) */
  private readonly byEvent = new Map<string, Map<Listener, Listener[]>>();
  private readonly failed: (event: string, err: unknown) => void;

  constructor(failed: (event: string, err: unknown) => void) {
    this.failed = failed;
  }

  /** The wrapper to add in the listener's place. */
  wrap(event: string, listener: Listener): Listener {
    const guarded = (...args: never[]): void => {
      try {
        const result = listener(...args);
        if (isPromise(result)) result.then(undefined, (err: unknown) => this.failed(event, err));
      } catch (err) {
        this.failed(event, err);
      }
    };
    let byListener = this.byEvent.get(event);
    if (byListener === undefined) this.byEvent.set(event, (byListener = new Map()));
    byListener.set(listener, [...(byListener.get(listener) ?? []), guarded]);
    return guarded;
  }

  /** The wrapper to remove for the listener (the latest added), or undefined when it was never added. */
  unwrap(event: string, listener: Listener): Listener | undefined {
    const byListener = this.byEvent.get(event);
    const list = byListener?.get(listener);
    const guarded = list?.pop();
    if (list !== undefined && list.length === 0) byListener?.delete(listener);
    return guarded;
  }
}
