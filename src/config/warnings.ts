import type { MidgeConfig } from './schema.js';

/**
 * Settings that are valid one by one but do nothing as given: start-up logs these and check-config
 * prints them, so that a feature asked for is not silently off.
 */
export function configWarnings(config: MidgeConfig): string[] {
  const out: string[] = [];
  if (config.adminToken !== '' && config.httpPort < 0) {
    out.push('adminToken (--admin-token) is set but httpPort (--http-port) is not: the admin API is off');
  }
  for (const [i, l] of (config.listeners ?? []).entries()) {
    if (l.path !== undefined && (l.protocol === 'mqtt' || l.protocol === 'mqtts')) {
      out.push(`listeners[${i}].path does nothing on an ${l.protocol} listener: only ws and wss listeners serve a path`);
    }
    // without requireClientCert no client certificate is asked for, so there is none to take a name from
    if (l.tls?.certificateAsUsername === true && l.tls.requireClientCert !== true) {
      out.push(`listeners[${i}].tls.certificateAsUsername does nothing without tls.requireClientCert: no client certificate is asked for`);
    }
  }
  return out;
}
