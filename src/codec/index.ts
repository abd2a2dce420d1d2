// The MQTT codec: an incremental parser, an encoder and the shared PUBLISH frame. No I/O.
export { PacketParser, type ParserOptions } from './parser.js';
export { encodePacket } from './encoder.js';
export { encodePublishFrame, frameBytes, INLINE_PAYLOAD, type PublishFrame } from './publish-frame.js';
export { ProtocolError } from './protocol-error.js';
export * from './packets.js';
export { RC, RC3 } from './reason-codes.js';
