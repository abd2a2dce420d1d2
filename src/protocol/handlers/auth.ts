import type { AuthPacket } from '../../codec/packets.js';
import { RC } from '../../codec/reason-codes.js';
import type { Channel } from '../channel.js';

/**
 * AUTH outside an enhanced-authentication exchange. No method is accepted at CONNECT yet, so
 * any AUTH is a protocol error (it is only valid after a CONNECT that named an Authentication Method).
 */
export function handleAuth(ch: Channel, _p: AuthPacket): void {
  ch.closeWith(RC.ProtocolError, 'AUTH without an authentication method in CONNECT');
}
