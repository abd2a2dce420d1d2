import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// The in-process benchmark of Midge's own handling: a number from it is worth something only if
// every message it times went through.
const PUBLISH_PATH = fileURLToPath(new URL('../../bench/publish-path.js', import.meta.url));
const run = promisify(execFile);

describe('bench publish-path (Midge without sockets)', () => {
  for (const version of [3, 4, 5]) {
    for (const qos of [0, 1, 2]) {
      test(`MQTT ${version === 5 ? '5.0' : version === 4 ? '3.1.1' : '3.1'} QoS ${qos}: every message is delivered and timed`, async () => {
        const { stdout } = await run(process.execPath, [PUBLISH_PATH, '--messages', '2000', '--qos', String(qos), '--version', String(version), '--json']);
        const r = JSON.parse(stdout) as { messages: number; delivered: number; nsPerMessage: number; loopNsPerMessage: number };
        assert.equal(r.messages, 2000);
        assert.equal(r.delivered, 2000);
        assert.ok(r.loopNsPerMessage > 0 && Number.isFinite(r.nsPerMessage), stdout);
      });
    }
  }

  test('refuses options it cannot run', async () => {
    await assert.rejects(run(process.execPath, [PUBLISH_PATH, '--qos', '3']), (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 2);
      assert.match(err.stderr ?? '', /usage: publish-path\.js/);
      return true;
    });
  });
});
