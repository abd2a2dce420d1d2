import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  ca: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** issues another server certificate (for reload tests); returns [cert, key] paths */
  issueServer(name: string): [string, string];
  /** issues a client certificate with this subject, e.g. '/O=No CN' or '/CN=a/CN=b'; returns [cert, key] paths */
  issueClient(name: string, subject: string): [string, string];
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** A throwaway CA with a server certificate for 127.0.0.1/localhost and a client certificate. */
export function createPki(clientCn = 'device-1'): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'midge-pki-'));
  const p = (f: string): string => join(dir, f);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=Midge Test CA'], dir);
  writeFileSync(p('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  writeFileSync(p('client.ext'), 'extendedKeyUsage=clientAuth\n');
  const issue = (name: string, cn: string, ext: string, subject = `/CN=${cn}`): [string, string] => {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', ext], dir);
    return [p(`${name}.crt`), p(`${name}.key`)];
  };
  const [serverCert, serverKey] = issue('server', 'localhost', 'server.ext');
  const [clientCert, clientKey] = issue('client', clientCn, 'client.ext');
  return {
    dir,
    ca: p('ca.crt'),
    caKey: p('ca.key'),
    serverCert,
    serverKey,
    clientCert,
    clientKey,
    issueServer: (name) => issue(name, 'localhost', 'server.ext'),
    issueClient: (name, subject) => issue(name, '', 'client.ext', subject),
  };
}
