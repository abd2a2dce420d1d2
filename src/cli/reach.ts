/** Where the broker can be reached from, said at start-up for people (on stderr, not in the log). */

export interface Endpoints {
  /** the MQTT listeners: a host, or a Unix socket (this machine only) */
  mqtt: ReadonlyArray<{ host: string; socket?: string | undefined }>;
  /** the HTTP endpoint's host, undefined when it is off */
  httpHost: string | undefined;
}

/**
 * One line for each kind of endpoint whose reach a reader might take from the other: MQTT only
 * local, or the HTTP endpoint (metrics, admin API) not as local as MQTT.
 */
export function reachHints(e: Endpoints): string[] {
  const mqttLocal = e.mqtt.every((a) => a.socket !== undefined || isLoopback(a.host));
  const out: string[] = [];
  if (mqttLocal) out.push('only this machine can connect over MQTT; use --host 0.0.0.0 (or host: 0.0.0.0 in the config) to accept other machines');
  if (e.httpHost !== undefined) {
    const httpLocal = isLoopback(e.httpHost);
    if (mqttLocal && !httpLocal) out.push(`the HTTP endpoint accepts other machines (httpHost ${e.httpHost})`);
    if (!mqttLocal && httpLocal) out.push('only this machine can reach the HTTP endpoint; httpHost: 0.0.0.0 in the config opens it to other machines');
  }
  return out;
}

export function isLoopback(host: string): boolean {
  return host === '::1' || host.startsWith('127.') || host === 'localhost';
}

/** An address as it goes in a URL (IPv6 in brackets). */
export function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
