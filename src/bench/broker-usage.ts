import { readFileSync } from 'node:fs';

/** CPU seconds and resident memory of a process, from /proc (Linux). */
export interface Usage {
  cpuSeconds: number;
  rssBytes: number;
}

const CLOCK_TICKS = 100;

export function usageOf(pid: number): Usage | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the command name, which may contain spaces, closed by ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    return { cpuSeconds, rssBytes: rss === null ? NaN : Number(rss[1]) * 1024 };
  } catch {
    return undefined;
  }
}
