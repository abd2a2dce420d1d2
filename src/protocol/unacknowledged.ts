import { RC } from '../codec/reason-codes.js';
import type { Channel } from './channel.js';
import { StoreFault } from './ports.js';

/**
 * An acknowledgement waited for something that failed: the client is closed without it, and
 * resends or asks again after reconnecting. A commit the store could not make is the broker's own
 * fault (5.0: DISCONNECT 0x83, Implementation specific error); anything else it waited for (the
 * other nodes of a cluster) is 0x80.
 */
export function closeUnacknowledged(ch: Channel, err: unknown): void {
  const code = err instanceof StoreFault ? RC.ImplementationSpecificError : RC.UnspecifiedError;
  ch.closeWith(code, `not acknowledged: ${err instanceof Error ? err.message : String(err)}`);
}

/**
 * Sends what `send` makes once `durable` settles (now, when it is undefined): an acknowledgement of
 * state a crash must not take back waits for the commit that records it. A failed commit closes the
 * client unacknowledged.
 */
export function afterCommit(ch: Channel, durable: Promise<void> | undefined, send: () => void): void {
  if (durable === undefined) {
    send();
    return;
  }
  void durable.then(
    () => {
      if (ch.state === 'connected') send();
    },
    (err: unknown) => closeUnacknowledged(ch, err),
  );
}
