import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Kernel clock ticks per second, the unit of utime/stime in /proc/<pid>/stat. */
const CLK_TCK = readClockTicks();

function readClockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

/** User + system CPU time a process (all its threads) has used so far, in microseconds. */
export function processCpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces and parentheses: fields are counted after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so utime (14) and stime (15) sit at 11 and 12.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / CLK_TCK;
}

/** Resident set size of a process, in bytes (for memory-per-stream workloads). */
export function processRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** CPU time of this process (the load generator), in microseconds. */
export function selfCpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

export const cpuResolutionMicros = 1e6 / CLK_TCK;

/**
 * CPU time of the whole machine so far, µs, from /proc/stat: busy (user, nice, system, irq,
 * softirq), and steal (time the hypervisor gave our vCPUs to someone else).
 */
export function machineCpuMicros(): { busy: number; steal: number } {
  const first = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = first.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
  const toMicros = (ticks: number) => (ticks * 1e6) / CLK_TCK;
  return { busy: toMicros(user! + nice! + system! + irq! + softirq!), steal: toMicros(steal!) };
}

/** Read- and write-family system calls a process has made so far (/proc/<pid>/io syscr + syscw). */
export function processIoSyscalls(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const r = /^syscr:\s+(\d+)$/m.exec(io);
  const w = /^syscw:\s+(\d+)$/m.exec(io);
  return Number(r?.[1] ?? 0) + Number(w?.[1] ?? 0);
}

/** Cores the whole machine keeps busy over the next `ms` milliseconds. */
export async function machineBusyCores(ms: number): Promise<number> {
  const a = machineCpuMicros().busy;
  await new Promise((resolve) => setTimeout(resolve, ms));
  return (machineCpuMicros().busy - a) / (ms * 1000);
}
