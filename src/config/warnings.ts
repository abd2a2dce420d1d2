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
  out.push(...lockedOut(config));
  return out;
}

/**
 * With anonymous access off and no password file, a user name is checked against nothing and so
 * refused like no user name: only a client certificate taken as the user name, or an embedding
 * application's authenticate hook, lets a client in.
 */
function lockedOut(config: MidgeConfig): string[] {
  if (config.passwordFile !== '') return [];
  const why = 'allowAnonymous is false and there is no passwordFile, so no client can log in (a user name alone is refused) unless an authenticate hook of an embedding application accepts it';
  if (config.listeners === undefined) return config.allowAnonymous === 'false' ? [why] : [];
  return config.listeners.flatMap((l, i) => {
    const closed = l.allowAnonymous === false || (l.allowAnonymous === undefined && config.allowAnonymous === 'false');
    // there the verified certificate is the login
    const certified = l.tls?.requireClientCert === true && l.tls.certificateAsUsername === true;
    return closed && !certified ? [`listeners[${i}]: ${why}`] : [];
  });
}
