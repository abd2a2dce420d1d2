import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { after, describe, test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { createBroker, type Broker } from '../../src/index.js';
import { INPUT_TURN_BYTES } from '../../src/transport/connection.js';
import { startBroker } from '../helpers/broker.js';
import { eventually, rawConnect } from '../helpers/raw-session.js';

const brokers: Broker[] = [];
after(async () => {
  for (const b of brokers) await b.close();
});

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/**
 * A client's end of a stream handed to the broker: what the test pushes is what the client sends;
 * what the broker writes is decoded at once, so that the broker never waits on it.
 */
class Client extends Duplex {
  readonly packets: mqttPacket.Packet[] = [];
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });

  constructor() {
    super();
    this.parser.on('packet', (p: mqttPacket.Packet) => void this.packets.push(p));
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: () => void): void {
    this.parser.parse(chunk);
    callback();
  }

  send(packet: Record<string, unknown>): void {
    this.push(mqttPacket.generate(packet as unknown as mqttPacket.Packet));
  }

  /** The payloads of the PUBLISHes received so far, as text. */
  payloads(): string[] {
    return this.packets.flatMap((p) => (p.cmd === 'publish' ? [p.payload.toString()] : []));
  }
}

async function handledClient(broker: Broker, clientId: string): Promise<Client> {
  const c = new Client();
  broker.handle(c);
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId });
  assert.ok(await eventually(() => c.packets.some((p) => p.cmd === 'connack')));
  return c;
}

async function subscriber(broker: Broker, filter: string): Promise<Client> {
  const c = await handledClient(broker, `sub-${filter}`);
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] });
  assert.ok(await eventually(() => c.packets.some((p) => p.cmd === 'suback')));
  return c;
}

/** QoS 0 publishes to `topic` with payloads "0", "1"... padded to varied lengths, so that frames straddle the turns' shares. */
function publishes(topic: string, count: number): Buffer {
  const frames: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const payload = Buffer.from(`${i}${' '.repeat(i % 37)}`);
    frames.push(mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }));
  }
  return Buffer.concat(frames);
}

describe('one client input at a time: a flood from one client does not hold the others back', () => {
  test('a flood of small retained publishes over TCP is handled at most two shares a turn, and all of it is stored', async () => {
    const b = await startBroker({ sysInterval: 0 });
    try {
      const flood = await rawConnect(b.port, 4, { clientId: 'flood' });
      const count = 20_000;
      const frames = Array.from({ length: count }, (_, i) =>
        mqttPacket.generate({ cmd: 'publish', topic: `flood/${i}`, payload: Buffer.from(`v${i}`), qos: 0, retain: true, dup: false }),
      );
      const smallest = Math.min(...frames.map((f) => f.length));
      const before = b.broker.stats.messagesReceived;
      // how many publishes the broker handled between two turns of this process's event loop,
      // which is the broker's own: libuv alone would hand it up to 32 reads of 64 KB in one
      let most = 0;
      let last = before;
      let sampling = true;
      const sample = (): void => {
        const now = b.broker.stats.messagesReceived;
        most = Math.max(most, now - last);
        last = now;
        if (sampling) setImmediate(sample);
      };
      setImmediate(sample);
      flood.raw.send(Buffer.concat(frames));
      const done = await eventually(() => b.broker.stats.messagesReceived - before === count, 30_000);
      sampling = false;
      assert.ok(done, `${b.broker.stats.messagesReceived - before} of ${count} handled`);
      // a turn may end one share and begin the next, each with a frame cut at its edge
      const bound = 2 * (Math.ceil(INPUT_TURN_BYTES / smallest) + 1);
      assert.ok(most <= bound, `${most} publishes handled in one turn, more than ${bound} (${INPUT_TURN_BYTES} bytes twice)`);
      assert.equal(b.broker.stats.retained, count);
      flood.raw.close();
    } finally {
      await b.close();
    }
  });

  test('[MQTT-4.6.0-6] a read larger than a share is handled over several turns, in order, frames cut at its edges included', async () => {
    const broker = await createBroker({ persistence: 'memory', sysInterval: 0 });
    brokers.push(broker);
    const sub = await subscriber(broker, 'order');
    const pub = await handledClient(broker, 'order-pub');
    const count = 5000;
    const chunk = publishes('order', count);
    assert.ok(chunk.length > 8 * INPUT_TURN_BYTES, 'a read of many shares');
    const before = broker.stats.messagesReceived;
    // one chunk, as a stream hands it over: no socket splits it into reads
    pub.push(chunk);
    await turn();
    const inFirstTurn = broker.stats.messagesReceived - before;
    assert.ok(inFirstTurn > 0 && inFirstTurn < count / 4, `${inFirstTurn} of ${count} handled in the turn the read came in`);
    // the stream's next input, while most of the read still waits: it comes after the read
    pub.push(publishes('order', 3));
    assert.ok(await eventually(() => sub.payloads().length === count + 3, 10_000), `${sub.payloads().length} of ${count + 3} delivered`);
    assert.deepEqual(
      sub.payloads().map((p) => p.trimEnd()),
      [...Array.from({ length: count }, (_, i) => String(i)), '0', '1', '2'],
    );
  });

  test('a client paused for its publish rate in the middle of a large read: the rest of the read is handled once the pause ends, in order', async () => {
    const broker = await createBroker({ persistence: 'memory', sysInterval: 0, limits: { maxPublishRate: 1000 } });
    brokers.push(broker);
    const sub = await subscriber(broker, 'rated');
    const pub = await handledClient(broker, 'rated-pub');
    const count = 1500;
    const chunk = publishes('rated', count);
    assert.ok(chunk.length > 2 * INPUT_TURN_BYTES, 'a read of several shares');
    pub.push(chunk);
    assert.ok(await eventually(() => sub.payloads().length === count, 10_000), `${sub.payloads().length} of ${count} delivered`);
    assert.deepEqual(
      sub.payloads().map((p) => p.trimEnd()),
      Array.from({ length: count }, (_, i) => String(i)),
    );
    assert.ok(broker.stats.publishesThrottled > 0, 'the rate paused the client');
    assert.equal(broker.stats.messagesDropped, 0);
  });
});
