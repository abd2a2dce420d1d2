import { connect, type Socket } from 'node:net';
import { encodePacket, PacketParser, type Packet, type ProtocolVersion, type QoS } from '../codec/index.js';

/**
 * A lean MQTT client for load generation: the broker's own codec, no library in between, QoS 1/2
 * flows handled inline, a window of unacknowledged publishes for flow control.
 */
export class BenchClient {
  private readonly parser: PacketParser;
  private nextId = 0;
  /** unacknowledged QoS 1/2 publishes */
  inflight = 0;
  onMessage: (payload: Buffer, qos: QoS) => void = () => undefined;
  onAck: () => void = () => undefined;
  private waiting: ((p: Packet) => boolean) | undefined;
  private waitDone: (() => void) | undefined;

  private constructor(
    readonly socket: Socket,
    readonly version: ProtocolVersion,
  ) {
    this.parser = new PacketParser({ maxPacketSize: 268435455, protocolVersion: version });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      for (const p of this.parser.push(chunk)) this.handle(p);
    });
    socket.on('error', () => undefined);
  }

  static async connect(port: number, host: string, clientId: string, version: ProtocolVersion, clean = true): Promise<BenchClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ port, host }, () => resolve(s));
      s.once('error', reject);
    });
    const c = new BenchClient(socket, version);
    const acked = c.waitFor((p) => p.type === 'connack');
    c.send({ type: 'connect', protocolName: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version, cleanStart: clean, keepAlive: 0, clientId: clientId.slice(0, 23), ...(version === 5 ? { properties: { receiveMaximum: 65535 } } : {}) });
    await acked;
    return c;
  }

  async subscribe(filter: string, qos: QoS): Promise<void> {
    const done = this.waitFor((p) => p.type === 'suback');
    this.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: filter, qos, noLocal: false, retainAsPublished: false, retainHandling: 0 }] });
    await done;
  }

  /** Returns false when the socket asks to wait for 'drain'. */
  publish(topic: string, payload: Buffer, qos: QoS): boolean {
    if (qos === 0) return this.socket.write(encodePacket({ type: 'publish', topic, payload, qos, retain: false, dup: false }, this.version));
    this.nextId = (this.nextId % 65535) + 1;
    this.inflight++;
    return this.socket.write(encodePacket({ type: 'publish', topic, payload, qos, retain: false, dup: false, packetId: this.nextId }, this.version));
  }

  send(p: Packet): void {
    this.socket.write(encodePacket(p, this.version));
  }

  close(): void {
    this.socket.destroy();
  }

  private waitFor(match: (p: Packet) => boolean): Promise<void> {
    return new Promise((resolve) => {
      this.waiting = match;
      this.waitDone = resolve;
    });
  }

  private handle(p: Packet): void {
    if (this.waiting !== undefined && this.waiting(p)) {
      this.waiting = undefined;
      this.waitDone?.();
      return;
    }
    switch (p.type) {
      case 'publish':
        if (p.qos === 1) this.send({ type: 'puback', packetId: p.packetId as number });
        else if (p.qos === 2) this.send({ type: 'pubrec', packetId: p.packetId as number });
        this.onMessage(p.payload, p.qos);
        return;
      case 'pubrel':
        this.send({ type: 'pubcomp', packetId: p.packetId });
        return;
      case 'pubrec':
        this.send({ type: 'pubrel', packetId: p.packetId });
        return;
      case 'puback':
      case 'pubcomp':
        this.inflight--;
        this.onAck();
        return;
      default:
        return;
    }
  }
}
