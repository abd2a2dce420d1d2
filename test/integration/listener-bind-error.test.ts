import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { createBroker } from '../../src/index.js';
import { createPki } from '../helpers/certs.js';

interface LogLine {
  level: number;
  msg: string;
}

describe('a listener that cannot bind', () => {
  test('ws and wss: the bind error rejects listen() and is not logged as well', async () => {
    const pki = createPki();
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    const lines: LogLine[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
    const broker = await createBroker({ persistence: 'memory', logger });
    try {
      for (const protocol of ['mqtt', 'mqtts', 'ws', 'wss'] as const) {
        const tls = protocol === 'mqtts' || protocol === 'wss' ? { tls: { cert: pki.serverCert, key: pki.serverKey } } : {};
        await assert.rejects(broker.listen({ port, host: '127.0.0.1', protocol, ...tls }), { code: 'EADDRINUSE' }, protocol);
      }
      // the error reaches the caller, who reports it: a log line (with its stack) would be a second report
      assert.deepEqual(lines.filter((l) => l.level >= 40).map((l) => l.msg), []);
    } finally {
      await broker.close();
      taken.close();
    }
  });
});
