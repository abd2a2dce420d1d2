import type { AckPacket } from '../../codec/packets.js';
import type { Channel } from '../channel.js';

/** Acknowledgements of messages the broker sent: PUBACK, PUBREC, PUBCOMP. */
export function handleAck(ch: Channel, p: AckPacket): void {
  switch (p.type) {
    case 'puback':
      // the packet id is free again once PUBACK arrives
      ch.outbound.complete(p.packetId, 'publish');
      return;
    case 'pubrec':
      ch.outbound.received(p.packetId, p.reasonCode ?? 0);
      return;
    case 'pubcomp':
      ch.outbound.complete(p.packetId, 'pubrel');
      return;
    default:
      return;
  }
}
