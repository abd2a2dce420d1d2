import { getHeapStatistics } from 'node:v8';
import { Buffer } from 'node:buffer';
import type { TransportStats } from '../transport/connection.js';
import { createMessage } from '../session/message.js';
import type { BrokerCore } from './broker-core.js';
import { statsSnapshot } from './stats.js';

/** Load averages the way Mosquitto reports them: exponentially smoothed rates per minute. */
const WINDOWS = [
  ['1min', 60],
  ['5min', 300],
  ['15min', 900],
] as const;

type Loads = Record<string, number>;

/**
 * The broker's own `$SYS/broker/...` topics, with Mosquitto's names, published as retained
 * messages every `intervalSeconds`. Clients read them like any topic but may not publish there.
 */
export class SysTopics {
  private timer: NodeJS.Timeout | undefined;
  private readonly startedAt = Date.now();
  private last: { at: number; received: number; sent: number; bytesIn: number; bytesOut: number } | undefined;
  private readonly loads: Record<'received' | 'sent' | 'bytesIn' | 'bytesOut', Loads> = { received: {}, sent: {}, bytesIn: {}, bytesOut: {} };

  constructor(
    private readonly core: BrokerCore,
    private readonly transport: TransportStats,
    private readonly version: string,
    private readonly intervalSeconds: number,
  ) {}

  start(): void {
    if (this.intervalSeconds <= 0 || this.timer !== undefined) return;
    this.publishNow();
    this.timer = setInterval(() => {
      try {
        this.publishNow();
      } catch (err) {
        this.core.reportFault(err, 'publishing $SYS topics');
      }
    }, this.intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  publishNow(now = Date.now()): void {
    const s = statsSnapshot(this.core, this.transport);
    // Mosquitto's messages/* and load/messages/* count packets of every kind; publish/messages/* count PUBLISH
    this.updateLoads(now, s.packetsReceived, s.packetsSent, s.bytesReceived, s.bytesSent);
    const values: Array<[string, string | number]> = [
      ['version', `midge ${this.version}`],
      ['uptime', `${Math.floor((now - this.startedAt) / 1000)} seconds`],
      ['clients/connected', s.clientsConnected],
      ['clients/active', s.clientsConnected],
      ['clients/disconnected', s.clientsDisconnected],
      ['clients/inactive', s.clientsDisconnected],
      ['clients/total', s.clientsConnected + s.clientsDisconnected],
      ['clients/maximum', s.clientsMaximum],
      ['messages/received', s.packetsReceived],
      ['messages/sent', s.packetsSent],
      ['messages/stored', s.messagesStored + s.retained],
      ['store/messages/count', s.messagesStored + s.retained],
      ['publish/messages/received', s.messagesReceived],
      ['publish/messages/sent', s.messagesSent],
      ['publish/messages/dropped', s.messagesDropped],
      ['bytes/received', s.bytesReceived],
      ['bytes/sent', s.bytesSent],
      ['subscriptions/count', s.subscriptions],
      ['retained messages/count', s.retained],
      // not process.memoryUsage(): it needs a file descriptor, and a broker may have none left
      ['heap/current', getHeapStatistics().used_heap_size],
    ];
    for (const [name] of WINDOWS) {
      values.push([`load/messages/received/${name}`, round(this.loads.received[name])]);
      values.push([`load/messages/sent/${name}`, round(this.loads.sent[name])]);
      values.push([`load/bytes/received/${name}`, round(this.loads.bytesIn[name])]);
      values.push([`load/bytes/sent/${name}`, round(this.loads.bytesOut[name])]);
    }
    for (const [name, value] of values) {
      const message = createMessage(`$SYS/broker/${name}`, Buffer.from(String(value)), 0, true, undefined, this.core, undefined);
      void this.core.publish(message);
    }
  }

  private updateLoads(now: number, received: number, sent: number, bytesIn: number, bytesOut: number): void {
    const last = this.last;
    this.last = { at: now, received, sent, bytesIn, bytesOut };
    if (last === undefined || now <= last.at) return;
    const seconds = (now - last.at) / 1000;
    const perMinute = (delta: number): number => (delta / seconds) * 60;
    const rates = {
      received: perMinute(received - last.received),
      sent: perMinute(sent - last.sent),
      bytesIn: perMinute(bytesIn - last.bytesIn),
      bytesOut: perMinute(bytesOut - last.bytesOut),
    };
    for (const [name, window] of WINDOWS) {
      const k = 1 - Math.exp(-seconds / window);
      for (const key of ['received', 'sent', 'bytesIn', 'bytesOut'] as const) {
        const prev = this.loads[key][name] ?? 0;
        this.loads[key][name] = prev + k * (rates[key] - prev);
      }
    }
  }
}

function round(n: number | undefined): string {
  return (n ?? 0).toFixed(2);
}
