import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseProxyHeader } from '../../../src/transport/proxy-protocol.js';

const V2 = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

describe('PROXY protocol headers', () => {
  test('v1 TCP4 and TCP6 give the source address; UNKNOWN gives none', () => {
    const v4 = parseProxyHeader(Buffer.from('PROXY TCP4 192.0.2.1 192.0.2.2 4000 1883\r\nrest'));
    assert.deepEqual(v4, { consumed: 42, address: '192.0.2.1:4000' });
    const v6 = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 4000 1883\r\n'));
    assert.deepEqual(v6, { consumed: 46, address: '2001:db8::1:4000' });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { consumed: 15, address: undefined });
  });

  test('v1 split anywhere is incomplete until the CRLF arrives', () => {
    const full = Buffer.from('PROXY TCP4 192.0.2.1 192.0.2.2 4000 1883\r\n');
    for (let i = 1; i < full.length; i++) assert.equal(parseProxyHeader(full.subarray(0, i)), 'incomplete', `prefix ${i}`);
  });

  test('v2 PROXY over IPv4 and IPv6, and LOCAL', () => {
    const ipv4 = Buffer.concat([V2, Buffer.from([0x21, 0x11, 0x00, 0x0c, 10, 1, 2, 3, 10, 0, 0, 1, 0x30, 0x39, 0x07, 0x5b])]);
    assert.deepEqual(parseProxyHeader(ipv4), { consumed: 28, address: '10.1.2.3:12345' });
    const src6 = Buffer.alloc(16);
    src6.writeUInt16BE(0x2001, 0);
    src6.writeUInt16BE(0x0db8, 2);
    src6.writeUInt16BE(1, 14);
    const ipv6 = Buffer.concat([V2, Buffer.from([0x21, 0x21, 0x00, 0x24]), src6, Buffer.alloc(16), Buffer.from([0x00, 0x50, 0x07, 0x5b])]);
    assert.deepEqual(parseProxyHeader(ipv6), { consumed: 52, address: '[2001:db8:0:0:0:0:0:1]:80' });
    const local = Buffer.concat([V2, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    assert.deepEqual(parseProxyHeader(local), { consumed: 16, address: undefined });
    for (let i = 1; i < ipv4.length; i++) assert.equal(parseProxyHeader(ipv4.subarray(0, i)), 'incomplete');
  });

  test('anything else is refused: MQTT bytes, bad v1 fields, a wrong v2 version, an overlong v1 line', () => {
    assert.throws(() => parseProxyHeader(Buffer.from([0x10, 0x0c, 0x00])));
    assert.throws(() => parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n')));
    assert.throws(() => parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4\r\n')));
    assert.throws(() => parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')));
    assert.throws(() => parseProxyHeader(Buffer.concat([V2, Buffer.from([0x11, 0x11, 0x00, 0x00])])));
    assert.throws(() => parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)));
  });
});
