import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { createBroker, type Broker, type BrokerOptions } from '../../src/index.js';

export interface TestBroker {
  broker: Broker;
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * A real broker on an ephemeral loopback port. Unless the test brings its own logger, closing it
 * fails when the broker met a fault of its own meanwhile (see faultLog).
 */
export async function startBroker(options: BrokerOptions = {}): Promise<TestBroker> {
  const log = options.logger === undefined ? faultLog() : undefined;
  const broker = await createBroker({ persistence: 'memory', ...(log === undefined ? {} : { logger: log.logger }), ...options });
  const { port } = await broker.listen({ port: 0, host: '127.0.0.1' });
  const close = async (): Promise<void> => {
    await broker.close();
    if (log !== undefined && log.faults.length > 0) throw new Error(`the broker met faults of its own:\n${log.faults.join('\n')}`);
  };
  return { broker, port, url: `mqtt://127.0.0.1:${port}`, close };
}

/** A fault the broker logged: "internal error serving ADDRESS; ..." or "internal error in TASK; ...". */
export interface FaultEntry {
  msg: string;
  task?: string;
  err?: { message: string; stack?: string };
}

/**
 * A logger that keeps the broker's faults of its own ("internal error ..." at error level). The
 * broker logs such a fault and goes on, so a test that drives it hard (fuzz, random sessions)
 * must look for them: the client it cost is closed, and nothing else would show the bug. `faults`
 * gives each with its stack.
 */
export function faultLog(): { logger: Logger; entries: FaultEntry[]; faults: string[] } {
  const entries: FaultEntry[] = [];
  const logger = pino({ level: 'error' }, {
    write: (line: string) => {
      const entry = JSON.parse(line) as FaultEntry;
      if (entry.msg?.startsWith('internal error') === true) entries.push(entry);
    },
  });
  return {
    logger,
    entries,
    get faults() {
      return entries.map((e) => `${e.msg}\n${e.err?.stack ?? ''}`);
    },
  };
}

const clients = new Set<MqttClient>();
const connacks = new WeakMap<MqttClient, mqtt.IConnackPacket>();

/** The CONNACK a client of connectClient was let in with. */
export function connackOf(client: MqttClient): mqtt.IConnackPacket {
  const ack = connacks.get(client);
  if (ack === undefined) throw new Error('not a client of connectClient');
  return ack;
}

/**
 * An MQTT.js client, resolved once CONNACK arrives (rejected on error). `setup` sees the client
 * before it connects: what the broker sends right behind the CONNACK is emitted before the
 * returned promise's continuation runs.
 */
export function connectClient(port: number, options: IClientOptions = {}, setup?: (client: MqttClient) => void): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect({
      host: '127.0.0.1',
      port,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      // MQTT 3.1 names its protocol MQIsdp; MQTT.js only says so when asked
      ...(options.protocolVersion === 3 ? { protocolId: 'MQIsdp' as const } : {}),
      ...options,
    });
    clients.add(client);
    setup?.(client);
    const onError = (err: Error): void => {
      client.off('close', onClose);
      client.end(true);
      reject(err);
    };
    // a server that closes the connection before its CONNACK makes no 'error': without this the
    // test would wait for ever (reconnectPeriod 0 tries no more)
    const onClose = (): void => {
      client.off('error', onError);
      reject(new Error(`connection closed before the CONNACK (client id ${String(options.clientId)})`));
    };
    client.once('error', onError);
    client.once('close', onClose);
    client.once('connect', (connack) => {
      connacks.set(client, connack);
      client.off('error', onError);
      client.off('close', onClose);
      resolve(client);
    });
  });
}

/** Ends every client opened by connectClient (call in after/afterEach). */
export async function closeClients(): Promise<void> {
  await Promise.all([...clients].map((c) => c.endAsync(true).catch(() => undefined)));
  clients.clear();
}

/** Resolves with the next `count` messages a client receives. */
export function nextMessages(
  client: MqttClient,
  count: number,
  timeoutMs = 3000,
): Promise<Array<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }>> {
  return new Promise((resolve, reject) => {
    const got: Array<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }> = [];
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new Error(`timed out with ${got.length}/${count} messages${got.length === 0 ? '' : ` (${got.map((m) => m.topic).join(', ')})`}`));
    }, timeoutMs);
    const onMessage = (topic: string, payload: Buffer, packet: mqtt.IPublishPacket): void => {
      got.push({ topic, payload, packet });
      if (got.length === count) {
        clearTimeout(timer);
        client.off('message', onMessage);
        resolve(got);
      }
    };
    client.on('message', onMessage);
  });
}

/** Asserts that no message arrives within `ms`. Resolves with what did arrive (expected empty). */
export function collectFor(client: MqttClient, ms: number): Promise<Array<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }>> {
  return new Promise((resolve) => {
    const got: Array<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }> = [];
    const onMessage = (topic: string, payload: Buffer, packet: mqtt.IPublishPacket): void => {
      got.push({ topic, payload, packet });
    };
    client.on('message', onMessage);
    setTimeout(() => {
      client.off('message', onMessage);
      resolve(got);
    }, ms);
  });
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
