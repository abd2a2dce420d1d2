import assert from 'node:assert/strict';
import { RawClient, type DecodedPacket } from './raw-client.js';

/** A decoded packet seen loosely: the fields mqtt-packet fills in vary by packet kind. */
export type Loose = DecodedPacket & {
  reasonCode?: number;
  returnCode?: number;
  sessionPresent?: boolean;
  messageId?: number;
  granted?: number[];
  properties?: Record<string, unknown>;
  topic?: string;
  payload?: Buffer;
  qos?: number;
  dup?: boolean;
  retain?: boolean;
};

export interface RawConnectOptions {
  clientId?: string;
  clean?: boolean;
  keepalive?: number;
  username?: string;
  password?: Buffer | string;
  properties?: Record<string, unknown>;
  will?: Record<string, unknown>;
}

/** Opens a raw connection, sends CONNECT and returns the client with the CONNACK it got. */
export async function rawConnect(
  port: number | string,
  protocolVersion: 3 | 4 | 5,
  options: RawConnectOptions = {},
): Promise<{ raw: RawClient; connack: Loose }> {
  const raw = await RawClient.open(port, protocolVersion);
  const password = typeof options.password === 'string' ? Buffer.from(options.password) : options.password;
  raw.sendPacket(
    {
      cmd: 'connect',
      protocolId: protocolVersion === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion,
      clientId: options.clientId ?? '',
      clean: options.clean ?? true,
      keepalive: options.keepalive ?? 0,
      ...(options.username === undefined ? {} : { username: options.username }),
      ...(password === undefined ? {} : { password }),
      ...(options.properties === undefined ? {} : { properties: options.properties }),
      ...(options.will === undefined ? {} : { will: options.will }),
    },
    protocolVersion,
  );
  const connack = (await raw.next()) as Loose;
  assert.equal(connack.cmd, 'connack');
  return { raw, connack };
}

/** The next packet, which must be of the given kind. */
export async function expectPacket(raw: RawClient, cmd: string, timeoutMs = 3000): Promise<Loose> {
  const p = (await raw.next(timeoutMs)) as Loose;
  assert.equal(p.cmd, cmd, `expected ${cmd}, got ${p.cmd} ${JSON.stringify(p)}`);
  return p;
}

/** Every packet that arrives within `ms` (none consumed beforehand are lost). */
export async function drainFor(raw: RawClient, ms: number): Promise<Loose[]> {
  const out: Loose[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      out.push((await raw.next(left)) as Loose);
    } catch {
      break;
    }
  }
  return out;
}

/** Subscribes over a raw connection and returns the SUBACK codes. */
export async function rawSubscribe(
  raw: RawClient,
  protocolVersion: 3 | 4 | 5,
  messageId: number,
  subscriptions: Array<{ topic: string; qos: 0 | 1 | 2 }>,
): Promise<Loose> {
  raw.sendPacket({ cmd: 'subscribe', messageId, subscriptions }, protocolVersion);
  const suback = await expectPacket(raw, 'suback');
  assert.equal(suback.messageId, messageId);
  return suback;
}

/**
 * Subscribes over a raw connection where retained messages may come before the SUBACK (3.8.4
 * permits it: a session kept on disk has its SUBACK wait for the commit, its retained messages do
 * not); returns the SUBACK and the packets that came first.
 */
export async function rawSubscribeEarly(
  raw: RawClient,
  protocolVersion: 3 | 4 | 5,
  messageId: number,
  subscriptions: Array<{ topic: string; qos: 0 | 1 | 2 }>,
  timeoutMs = 3000,
): Promise<{ suback: Loose; before: Loose[] }> {
  raw.sendPacket({ cmd: 'subscribe', messageId, subscriptions }, protocolVersion);
  const before: Loose[] = [];
  for (;;) {
    const p = (await raw.next(timeoutMs)) as Loose;
    if (p.cmd === 'suback') {
      assert.equal(p.messageId, messageId);
      return { suback: p, before };
    }
    before.push(p);
  }
}

/** Polls until `check` is true or the time is up; returns whether it became true. */
export async function eventually(check: () => boolean, timeoutMs = 3000, stepMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return true;
}

/** Takes every PUBLISH sent until none comes for `quietMs`, acknowledging each (and answering PUBRELs); returns them in order. */
export async function takeAckingUntilQuiet(raw: RawClient, protocolVersion: 3 | 4 | 5, quietMs = 1500): Promise<Loose[]> {
  const got: Loose[] = [];
  for (;;) {
    let p: Loose;
    try {
      p = (await raw.next(quietMs)) as Loose;
    } catch {
      return got;
    }
    if (p.cmd === 'pubrel') raw.sendPacket({ cmd: 'pubcomp', messageId: p.messageId }, protocolVersion);
    if (p.cmd !== 'publish') continue;
    got.push(p);
    if (p.qos === 1) raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, protocolVersion);
    if (p.qos === 2) raw.sendPacket({ cmd: 'pubrec', messageId: p.messageId }, protocolVersion);
  }
}

/**
 * Receives up to `count` PUBLISH payloads as a well-behaved subscriber would (acknowledging QoS 1
 * and 2, completing PUBREL), in arrival order.
 */
export async function receiveAcking(raw: RawClient, protocolVersion: 3 | 4 | 5, count: number, timeoutMs = 5000): Promise<string[]> {
  const got: string[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < count && Date.now() < deadline) {
    const p = (await raw.next(Math.max(1, deadline - Date.now()))) as Loose;
    if (p.cmd === 'pubrel') raw.sendPacket({ cmd: 'pubcomp', messageId: p.messageId }, protocolVersion);
    if (p.cmd !== 'publish') continue;
    got.push(p.payload?.toString() ?? '');
    if (p.qos === 1) raw.sendPacket({ cmd: 'puback', messageId: p.messageId }, protocolVersion);
    if (p.qos === 2) raw.sendPacket({ cmd: 'pubrec', messageId: p.messageId }, protocolVersion);
  }
  return got;
}
