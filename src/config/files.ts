import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { AclFile, AclFileError } from '../auth/acl-file.js';
import { PasswordFile, PasswordFileError } from '../auth/password-file.js';
import { noCaCertificate, pemCertificates, type TlsPaths } from '../transport/tls-material.js';
import type { ListenerConfig } from './listeners.js';
import { ConfigError } from './load.js';
import type { MidgeConfig } from './schema.js';

/** A listener's TLS files, with how a message names the setting of each (a config key or a flag). */
export interface NamedTls {
  tls: TlsPaths;
  name: (file: 'cert' | 'key' | 'ca') => string;
}

/** The TLS files of a config file's listeners, named by their settings there. */
export function listenerTls(listeners: readonly ListenerConfig[] | undefined, source: string): NamedTls[] {
  return (listeners ?? []).flatMap((l, i) => (l.tls === undefined ? [] : [{ tls: l.tls, name: (file: string) => `${source}: listeners[${i}].tls.${file}` }]));
}

/**
 * Reads the files the settings name, as the broker will: check-config then finds a missing or
 * broken file, and start-up reports one as the configuration mistake it is (exit code 2) before
 * anything listens. The password and ACL files give the broker's own messages.
 */
export function checkConfigFiles(config: MidgeConfig, listeners: readonly NamedTls[]): void {
  try {
    if (config.passwordFile !== '') void new PasswordFile(config.passwordFile);
    if (config.aclFile !== '') void new AclFile(config.aclFile);
  } catch (err) {
    if (err instanceof PasswordFileError || err instanceof AclFileError) throw new ConfigError(err.message);
    throw err;
  }
  for (const { tls, name } of listeners) {
    const read = (file: 'cert' | 'key' | 'ca', path: string): Buffer => {
      try {
        return readFileSync(path);
      } catch (err) {
        throw new ConfigError(`${name(file)}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    };
    const material = { cert: read('cert', tls.cert), key: read('key', tls.key), ...(tls.ca === undefined ? {} : { ca: read('ca', tls.ca) }) };
    if (tls.ca !== undefined && material.ca !== undefined && pemCertificates(material.ca) === 0) throw new ConfigError(`${name('ca')}: ${noCaCertificate(tls.ca)}`);
    try {
      createSecureContext(material);
    } catch (err) {
      const files = tls.ca === undefined ? `${tls.cert} and ${tls.key}` : `${tls.cert}, ${tls.key} and ${tls.ca}`;
      throw new ConfigError(`${name('cert')}: ${files} are not a usable certificate and key: ${(err as Error).message.split('\n')[0]}`);
    }
  }
}
