import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { pemCertificates, TlsFiles } from '../../../src/transport/tls-material.js';
import { createPki } from '../../helpers/certs.js';

test('a CA file counts only the PEM certificates that parse: DER, a key, garbage and an empty file hold none', () => {
  const pki = createPki('ca-count');
  const der = join(pki.dir, 'ca.der');
  execFileSync('openssl', ['x509', '-in', pki.ca, '-outform', 'der', '-out', der]);
  assert.equal(pemCertificates(readFileSync(pki.ca)), 1);
  assert.equal(pemCertificates(Buffer.concat([readFileSync(pki.ca), readFileSync(pki.serverCert)])), 2);
  for (const bytes of [readFileSync(der), readFileSync(pki.clientKey), Buffer.from('-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n'), Buffer.alloc(0)]) {
    assert.equal(pemCertificates(bytes), 0);
  }
});

test('a CA file with no certificate is refused at start and on reload, where the one in use stays', () => {
  const pki = createPki('ca-reload');
  const ca = join(pki.dir, 'live-ca.pem');
  copyFileSync(pki.ca, ca);
  const files = new TlsFiles({ cert: pki.serverCert, key: pki.serverKey, ca, requireClientCert: true });
  writeFileSync(ca, '');
  assert.throws(() => files.reload(), /TLS CA file .*live-ca\.pem holds no PEM certificate/);
  assert.deepEqual(files.serverOptions().ca, readFileSync(pki.ca), 'the CA read before stays in use');
  assert.throws(() => new TlsFiles({ cert: pki.serverCert, key: pki.serverKey, ca: pki.clientKey }), /holds no PEM certificate/);
});
