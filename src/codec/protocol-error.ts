import type { ProtocolVersion } from './packets.js';

/**
 * A violation of the MQTT specification found while decoding or handling a packet.
 * `reasonCode` is the MQTT 5.0 reason code to report (0x81 malformed, 0x82 protocol error,
 * 0x95 packet too large, ...); the connection is closed after reporting it where the
 * version allows.
 */
export class ProtocolError extends Error {
  readonly reasonCode: number;
  /** Set when the error happened in a CONNECT whose protocol level was already read. */
  protocolVersion?: ProtocolVersion;
  /** Set when the error is in a CONNECT packet (so the server answers with CONNACK). */
  inConnect = false;

  constructor(reasonCode: number, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.reasonCode = reasonCode;
  }
}
