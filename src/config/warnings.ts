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
  return out;
}
