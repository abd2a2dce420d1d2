import type { DisconnectPacket } from '../../codec/packets.js';
import { RC } from '../../codec/reason-codes.js';
import type { Channel } from '../channel.js';

/** DISCONNECT from the client: a normal close discards the will; 0x04 asks for it to be sent. */
export function handleDisconnect(ch: Channel, p: DisconnectPacket): void {
  if (ch.version === 5) {
    const expiry = p.properties?.sessionExpiryInterval;
    if (expiry !== undefined) {
      if (ch.sessionExpiry === 0 && expiry !== 0) {
        // [MQTT-3.14.2-2] a session that was to end with the connection cannot be extended now
        ch.closeWith(RC.ProtocolError, 'session expiry interval set at DISCONNECT after CONNECT had 0');
        return;
      }
      const session = ch.session;
      ch.sessionExpiry = Math.min(expiry, ch.broker.settings.maxSessionExpiryInterval);
      if (session !== undefined) session.expiryInterval = ch.sessionExpiry;
    }
  }
  if (p.reasonCode !== RC.DisconnectWithWill) {
    // [MQTT-3.1.2-10] / [MQTT-3.14.4-3] the will is discarded on a normal DISCONNECT
    ch.will = undefined;
  }
  // [MQTT-3.14.4-1] the server closes the connection; it sends nothing back
  ch.terminate(`client disconnected (reason code 0x${(p.reasonCode ?? 0).toString(16).padStart(2, '0')})`);
}
