import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import { scramSha256 } from '../../../src/index.js';
import type { AuthConversation, AuthOutcome, EnhancedAuthenticator } from '../../../src/index.js';
import { closeClients, startBroker, type TestBroker } from '../../helpers/broker.js';
import { RawClient } from '../../helpers/raw-client.js';
import { ScramClient } from '../../helpers/scram-client.js';

const METHOD = 'SCRAM-SHA-256';

type Props = { authenticationMethod?: string; authenticationData?: Buffer; reasonString?: string };

function connectPacket(clientId: string, properties: Props): Record<string, unknown> {
  return { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 30, clientId, properties };
}

/** CONNECT with SCRAM, through the AUTH exchange; returns the CONNACK. */
async function scramConnect(port: number, user: string, password: string, tamper = false): Promise<{ raw: RawClient; scram: ScramClient; connack: mqttPacket.IConnackPacket }> {
  const raw = await RawClient.open(port, 5);
  const scram = new ScramClient(user, password);
  raw.sendPacket(connectPacket(`scram-${user}-${Math.random()}`, { authenticationMethod: METHOD, authenticationData: scram.first() }), 5);
  const challenge = (await raw.next()) as mqttPacket.IAuthPacket;
  assert.equal(challenge.cmd, 'auth');
  assert.equal(challenge.reasonCode, 0x18);
  assert.equal(challenge.properties?.authenticationMethod, METHOD);
  // AUTH carries no diagnostics, so it never grows past the client's Maximum Packet Size with them
  assert.equal(challenge.properties?.reasonString, undefined);
  assert.equal(challenge.properties?.userProperties, undefined);
  const final = scram.final(challenge.properties?.authenticationData as Buffer, { tamperProof: tamper });
  raw.sendPacket({ cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: final } }, 5);
  const connack = (await raw.next()) as mqttPacket.IConnackPacket;
  assert.equal(connack.cmd, 'connack');
  return { raw, scram, connack };
}

describe('MQTT 5 enhanced authentication (5.0): SCRAM-SHA-256 over AUTH', () => {
  let b: TestBroker;
  before(async () => {
    b = await startBroker({ authenticators: [scramSha256({ users: { alice: 'wonderland', 'bob,=x': 'builder' } })] });
  });
  after(async () => {
    await closeClients();
    await b.close();
  });

  test('[MQTT-4.12.0-2] [MQTT-4.12.0-5] [MQTT-3.15.2-1] [MQTT-3.15.2-2] [MQTT-3.15.2-3] a full exchange: AUTH 0x18 challenge, CONNACK 0x00 with the method and the server signature', async () => {
    const { raw, scram, connack } = await scramConnect(b.port, 'alice', 'wonderland');
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.properties?.authenticationMethod, METHOD);
    assert.ok(scram.verifyServer(connack.properties?.authenticationData), 'server signature proves the server knows the key');
    raw.sendPacket({ cmd: 'pingreq' }, 5);
    assert.equal((await raw.next()).cmd, 'pingresp');
    raw.close();
  });

  test('usernames with "," and "=" are escaped as the RFC says', async () => {
    const { raw, connack } = await scramConnect(b.port, 'bob,=x', 'builder');
    assert.equal(connack.reasonCode, 0);
    raw.close();
  });

  test('[MQTT-4.12.0-4] a wrong password gets CONNACK 0x87 and the connection is closed', async () => {
    const { raw, connack } = await scramConnect(b.port, 'alice', 'looking-glass');
    assert.equal(connack.reasonCode, 0x87);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-4.12.0-4] an unknown user is refused the same way, after a normal-looking challenge', async () => {
    const { raw, connack } = await scramConnect(b.port, 'mallory', 'x');
    assert.equal(connack.reasonCode, 0x87);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-4.12.0-4] a tampered proof is refused', async () => {
    const { raw, connack } = await scramConnect(b.port, 'alice', 'wonderland', true);
    assert.equal(connack.reasonCode, 0x87);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-4.12.0-1] an unknown authentication method gets CONNACK 0x8C and a close', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket(connectPacket('unknown-method', { authenticationMethod: 'KERBEROS-9' }), 5);
    const connack = (await raw.next()) as mqttPacket.IConnackPacket;
    assert.equal(connack.reasonCode, 0x8c);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-4.12.0-6] [MQTT-4.12.0-7] without a method in CONNECT: no AUTH is sent, no method in CONNACK, and a client AUTH is a protocol error', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket(connectPacket('no-method', {}), 5);
    const connack = (await raw.next()) as mqttPacket.IConnackPacket;
    assert.equal(connack.reasonCode, 0);
    assert.equal(connack.properties?.authenticationMethod, undefined);
    raw.sendPacket({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: METHOD } }, 5);
    const disconnect = (await raw.next()) as mqttPacket.IDisconnectPacket;
    assert.equal(disconnect.cmd, 'disconnect');
    assert.equal(disconnect.reasonCode, 0x82);
    assert.ok(await raw.waitClosed());
  });

  test('a packet other than AUTH during the exchange closes the connection', async () => {
    const raw = await RawClient.open(b.port, 5);
    const scram = new ScramClient('alice', 'wonderland');
    raw.sendPacket(connectPacket('mid-exchange', { authenticationMethod: METHOD, authenticationData: scram.first() }), 5);
    assert.equal((await raw.next()).cmd, 'auth');
    raw.sendPacket({ cmd: 'pingreq' }, 5);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-4.12.1-1] re-authentication on a live connection: AUTH 0x19, challenge, AUTH 0x00 with the server signature', async () => {
    const { raw, connack } = await scramConnect(b.port, 'alice', 'wonderland');
    assert.equal(connack.reasonCode, 0);
    const again = new ScramClient('alice', 'wonderland');
    raw.sendPacket({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: METHOD, authenticationData: again.first() } }, 5);
    const challenge = (await raw.next()) as mqttPacket.IAuthPacket;
    assert.equal(challenge.reasonCode, 0x18);
    raw.sendPacket({ cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: again.final(challenge.properties?.authenticationData as Buffer) } }, 5);
    const done = (await raw.next()) as mqttPacket.IAuthPacket;
    assert.equal(done.cmd, 'auth');
    assert.equal(done.reasonCode, 0);
    assert.ok(again.verifyServer(done.properties?.authenticationData));
    raw.sendPacket({ cmd: 'pingreq' }, 5);
    assert.equal((await raw.next()).cmd, 'pingresp');
    raw.close();
  });

  test('[MQTT-4.12.1-2] a failed re-authentication gets DISCONNECT 0x87 and a close', async () => {
    const { raw } = await scramConnect(b.port, 'alice', 'wonderland');
    const again = new ScramClient('alice', 'not-the-password');
    raw.sendPacket({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: METHOD, authenticationData: again.first() } }, 5);
    const challenge = (await raw.next()) as mqttPacket.IAuthPacket;
    raw.sendPacket({ cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: again.final(challenge.properties?.authenticationData as Buffer) } }, 5);
    const disconnect = (await raw.next()) as mqttPacket.IDisconnectPacket;
    assert.equal(disconnect.cmd, 'disconnect');
    assert.equal(disconnect.reasonCode, 0x87);
    assert.ok(await raw.waitClosed());
  });

  test('[MQTT-4.12.0-5] re-authentication with another method is a protocol error', async () => {
    const { raw } = await scramConnect(b.port, 'alice', 'wonderland');
    raw.sendPacket({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'PLAIN' } }, 5);
    const disconnect = (await raw.next()) as mqttPacket.IDisconnectPacket;
    assert.equal(disconnect.reasonCode, 0x82);
    assert.ok(await raw.waitClosed());
  });

  test('MQTT.js completes the exchange through its handleAuth callback', async () => {
    const scram = new ScramClient('alice', 'wonderland');
    const client = mqtt.connect({
      host: '127.0.0.1',
      port: b.port,
      protocolVersion: 5,
      clientId: 'mqttjs-scram',
      reconnectPeriod: 0,
      properties: { authenticationMethod: METHOD, authenticationData: scram.first() },
    });
    // MQTT.js asks the application for the answer to each AUTH 0x18 from the server
    client.handleAuth = (packet, callback) => {
      const data = packet.properties?.authenticationData as Buffer;
      callback(undefined, { cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: METHOD, authenticationData: scram.final(data) } });
    };
    const connack = await new Promise<mqttPacket.IConnackPacket>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    assert.ok(scram.verifyServer(connack.properties?.authenticationData));
    await client.endAsync();
  });
});

describe('MQTT 5 enhanced authentication (5.0): a method that misbehaves refuses its client, and the broker goes on', () => {
  let b: TestBroker;
  let reauthentications = 0;
  const method = (name: string, start: (reauth: boolean) => AuthConversation): EnhancedAuthenticator => ({ method: name, start: (_c, reauth) => start(reauth) });
  const answers = (outcome: unknown): AuthConversation => ({ step: () => outcome as AuthOutcome });
  before(async () => {
    b = await startBroker({
      authenticators: [
        method('THROWS-START', () => {
          throw new Error('start failed');
        }),
        method('THROWS-STEP', () => ({
          step: () => {
            throw new Error('step failed');
          },
        })),
        method('NO-OUTCOME', () => answers(undefined)),
        method('UNKNOWN-KIND', () => answers({ kind: 'maybe' })),
        method('TEXT-DATA', () => answers({ kind: 'continue', data: 'not a buffer' })),
        method('NUMBER-USER', () => answers({ kind: 'success', username: 42 })),
        method('SUCCESS-CODE', () => answers({ kind: 'failure', reasonCode: 0 })),
        method('REJECTS', () => answers(Promise.reject(new Error('backend down')))),
        method('FIRST-ONLY', (reauth) => {
          if (reauth) reauthentications++;
          if (reauth) throw new Error('no second time');
          return answers({ kind: 'success' });
        }),
      ],
    });
  });
  after(async () => {
    await closeClients();
    await b.close();
  });

  const refusals: Array<[string, string]> = [
    ['THROWS-START', 'start() throws'],
    ['THROWS-STEP', 'step() throws'],
    ['NO-OUTCOME', 'step() answers undefined'],
    ['UNKNOWN-KIND', 'step() answers an unknown kind'],
    ['TEXT-DATA', 'step() answers continue with data that is not a Buffer'],
    ['NUMBER-USER', 'step() answers success with a user name that is not a string'],
    ['SUCCESS-CODE', 'step() answers failure with code 0'],
    ['REJECTS', 'step() rejects'],
  ];
  for (const [name, what] of refusals) {
    test(`[MQTT-4.12.0-4] ${what}: CONNACK 0x87 and a close, and the next client is served`, async () => {
      const raw = await RawClient.open(b.port, 5);
      raw.sendPacket(connectPacket(`bad-${name}`, { authenticationMethod: name }), 5);
      const connack = (await raw.next()) as mqttPacket.IConnackPacket;
      assert.equal(connack.cmd, 'connack');
      assert.equal(connack.reasonCode, 0x87);
      assert.ok(await raw.waitClosed());
      const next = await RawClient.open(b.port, 5);
      next.sendPacket(connectPacket(`after-${name}`, {}), 5);
      assert.equal(((await next.next()) as mqttPacket.IConnackPacket).reasonCode, 0);
      next.close();
    });
  }

  test('[MQTT-4.12.1-2] a method that throws on re-authentication: DISCONNECT 0x87 and a close', async () => {
    const raw = await RawClient.open(b.port, 5);
    raw.sendPacket(connectPacket('reauth-throws', { authenticationMethod: 'FIRST-ONLY' }), 5);
    assert.equal(((await raw.next()) as mqttPacket.IConnackPacket).reasonCode, 0);
    raw.sendPacket({ cmd: 'auth', reasonCode: 0x19, properties: { authenticationMethod: 'FIRST-ONLY' } }, 5);
    const disconnect = (await raw.next()) as mqttPacket.IDisconnectPacket;
    assert.equal(disconnect.cmd, 'disconnect');
    assert.equal(disconnect.reasonCode, 0x87);
    assert.ok(await raw.waitClosed());
    assert.equal(reauthentications, 1);
  });
});
