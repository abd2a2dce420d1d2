import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, loadConfigFile, resolveConfig } from '../../../src/config/load.js';
import { resolveListeners } from '../../../src/config/listeners.js';

function fileWith(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'midge-config-')), name);
  writeFileSync(path, text);
  return path;
}

function refused(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ConfigError && err.message === message);
}

describe('configuration checks', () => {
  test('settings that hold text say "must be a string", not "a file path"', () => {
    refused(() => resolveConfig({ adminToken: 12345 }, 'f.yaml'), 'f.yaml: adminToken must be a string (got 12345; quote it in YAML)');
    refused(() => resolveConfig({ clusterNodeId: true }, 'f.yaml'), 'f.yaml: clusterNodeId must be a string (got true)');
    refused(() => resolveConfig({ clusterRedis: 6379 }, 'f.yaml'), 'f.yaml: clusterRedis must be a string (got 6379; quote it in YAML)');
    refused(() => resolveConfig({ passwordFile: 1 }, 'f.yaml'), 'f.yaml: passwordFile must be a file path (got 1)');
    assert.equal(resolveConfig({ adminToken: '12345' }, 'f.yaml').adminToken, '12345');
  });

  test('a namer puts its names on settings, cluster ones included', () => {
    const flags = (s: string): string => `--${s.toLowerCase()}`;
    refused(() => resolveConfig({ allowAnonymous: 'yes' }, 'command line', flags), 'command line: --allowanonymous must be true or false (got "yes")');
    refused(() => resolveConfig({ clusterPrefix: 'a b' }, 'command line', flags), `command line: --clusterprefix must be 1 to 64 letters, digits, '.', '_', ':' or '-' (got "a b")`);
  });

  test('limits.maxSubscriptionBytes takes a whole number of bytes, 0 for no limit, and says so in one line otherwise', () => {
    const max = Number.MAX_SAFE_INTEGER;
    refused(() => resolveConfig({ limits: { maxSubscriptionBytes: -1 } }, 'f.yaml'), `f.yaml: limits.maxSubscriptionBytes must be an integer between 0 and ${max} (got -1)`);
    refused(() => resolveConfig({ limits: { maxSubscriptionBytes: 1.5 } }, 'f.yaml'), `f.yaml: limits.maxSubscriptionBytes must be an integer between 0 and ${max} (got 1.5)`);
    refused(() => resolveConfig({ limits: { maxSubscriptionBytes: 'lots' } }, 'f.yaml'), `f.yaml: limits.maxSubscriptionBytes must be an integer between 0 and ${max} (got "lots")`);
    assert.equal(resolveConfig({}, 'f.yaml').limits.maxSubscriptionBytes, 1048576);
    assert.equal(resolveConfig({ limits: { maxSubscriptionBytes: 0 } }, 'f.yaml').limits.maxSubscriptionBytes, 0);
  });

  test('a config file whose top level is not a mapping is said to be one, in YAML and JSON', () => {
    const yaml = fileWith('list.yaml', '- port: 1883\n');
    refused(() => loadConfigFile(yaml), `config: ${yaml} must hold a mapping of settings (name: value), not a list`);
    const json = fileWith('list.json', '[1]');
    refused(() => loadConfigFile(json), `config: ${json} must hold a mapping of settings (name: value), not a list`);
    const scalar = fileWith('word.yaml', 'hello\n');
    refused(() => loadConfigFile(scalar), `config: ${scalar} must hold a mapping of settings (name: value), not "hello"`);
    assert.deepEqual(loadConfigFile(fileWith('empty.yaml', '')), {});
    assert.deepEqual(loadConfigFile(fileWith('null.json', 'null')), {});
  });

  test('every boolean listener and TLS setting takes true or false only', () => {
    const tls = { cert: 'c.pem', key: 'k.pem', ca: 'ca.pem' };
    refused(() => resolveListeners([{ port: 1, tls: { ...tls, requireClientCert: 'yes' } }], 'f.yaml', 'h'), 'f.yaml: listeners[0].tls.requireClientCert must be true or false (got "yes")');
    refused(() => resolveListeners([{ port: 1, tls: { ...tls, certificateAsUsername: 1 } }], 'f.yaml', 'h'), 'f.yaml: listeners[0].tls.certificateAsUsername must be true or false (got 1)');
    refused(() => resolveListeners([{ port: 1, proxyProtocol: 'no' }], 'f.yaml', 'h'), 'f.yaml: listeners[0].proxyProtocol must be true or false (got "no")');
    refused(() => resolveListeners([{ port: 1, allowAnonymous: 'false' }], 'f.yaml', 'h'), 'f.yaml: listeners[0].allowAnonymous must be true or false (got "false")');
    refused(() => resolveListeners([{ port: 1, tls: [tls] }], 'f.yaml', 'h'), 'f.yaml: listeners[0].tls must be a mapping of settings');
    const [l] = resolveListeners([{ protocol: 'mqtts', port: 1, tls: { ...tls, requireClientCert: true } }], 'f.yaml', 'h');
    assert.equal(l?.tls?.requireClientCert, true);
    assert.equal(l?.tls?.certificateAsUsername, false);
    assert.equal(l?.allowAnonymous, undefined);
  });
});
