import { performance } from 'node:perf_hooks';
import { machineCpuMicros, processCpuMicros, processIoSyscalls, selfCpuMicros } from './cpu.ts';

/** What the progress line shows; the runner updates it in place. */
export interface Progress {
  phase: 'setup' | 'warm-up' | 'measure' | 'teardown';
  phaseStartedAt: number;
  phaseMs: number;
  ops: number;
  errors: number;
}

/**
 * A closed loop: `concurrency` virtual users, each running `op` back to back. Warm-up first
 * (not recorded), then the timed phase; an op counts when it completes inside the timed phase.
 */
export interface LoopSpec<S> {
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Per virtual user, before warm-up, untimed (e.g. open a session). */
  setup(vu: number): Promise<S>;
  /** One timed operation. Resolves true when the answer was right; false or a rejection is an error. */
  op(state: S): Promise<boolean>;
  teardown?(state: S): Promise<void>;
}

export interface LoopResult {
  readonly ops: number;
  readonly errors: number;
  readonly seconds: number;
  /** Latency of every op completed in the timed phase, ms, sorted ascending. */
  readonly latenciesMs: Float64Array;
  /** CPU time used during the timed phase, µs, by role ("client" is this process). */
  readonly cpuMicros: Record<string, number>;
  /**
   * The whole machine during the timed phase, in cores: busy, busy outside the processes measured
   * (other work on the machine: noise), and stolen by the hypervisor.
   */
  readonly machine: { readonly busyCores: number; readonly otherCores: number; readonly stealCores: number };
  /** Read/write-family system calls made during the timed phase, by role (not "client"). */
  readonly ioSyscalls: Record<string, number>;
  readonly firstError: string | undefined;
}

export async function runLoop<S>(spec: LoopSpec<S>, pids: Readonly<Record<string, number>>, progress: Progress): Promise<LoopResult> {
  enter(progress, 'setup', 0);
  const states = await Promise.all(Array.from({ length: spec.concurrency }, (_, vu) => spec.setup(vu)));

  // An object, not a let: the timers below change it while virtual users await.
  const clock: { phase: 'warm-up' | 'measure' | 'done' } = { phase: 'warm-up' };
  const phaseNow = () => clock.phase;
  let measureStart = Infinity;
  let latencies = new Float64Array(1 << 16);
  let ops = 0;
  let errors = 0;
  let firstError: string | undefined;

  const user = async (state: S) => {
    while (clock.phase !== 'done') {
      const t0 = performance.now();
      let ok: boolean;
      try {
        ok = await spec.op(state);
      } catch (err) {
        ok = false;
        firstError ??= (err as Error)?.message ?? String(err);
      }
      const t1 = performance.now();
      const phase = phaseNow();
      if (phase === 'done') break;
      if (phase === 'measure' && t1 >= measureStart) {
        if (ops === latencies.length) {
          const grown = new Float64Array(latencies.length * 2);
          grown.set(latencies);
          latencies = grown;
        }
        latencies[ops++] = t1 - t0;
        if (!ok) errors++;
      }
      progress.ops++;
      if (!ok) progress.errors++;
    }
  };

  enter(progress, 'warm-up', spec.warmupMs);
  const users = Promise.all(states.map(user));
  await sleep(spec.warmupMs);
  const syscallsBefore = sampleSyscalls(pids);
  const before = sampleCpu(pids);
  measureStart = performance.now();
  clock.phase = 'measure';
  enter(progress, 'measure', spec.measureMs);
  await sleep(spec.measureMs);
  const after = sampleCpu(pids);
  const measureEnd = performance.now();
  const syscallsAfter = sampleSyscalls(pids);
  clock.phase = 'done';
  progress.phase = 'teardown';
  await users;
  if (spec.teardown) await Promise.all(states.map((s) => spec.teardown!(s)));

  const cpuMicros: Record<string, number> = {};
  let ours = 0;
  for (const role of Object.keys(after.byRole)) {
    cpuMicros[role] = after.byRole[role]! - (before.byRole[role] ?? 0);
    ours += cpuMicros[role];
  }
  const wallMicros = (measureEnd - measureStart) * 1000;
  const busy = after.machineBusy - before.machineBusy;
  const machine = {
    busyCores: busy / wallMicros,
    otherCores: Math.max(0, busy - ours) / wallMicros,
    stealCores: (after.machineSteal - before.machineSteal) / wallMicros,
  };
  const ioSyscalls: Record<string, number> = {};
  for (const role of Object.keys(syscallsAfter)) ioSyscalls[role] = syscallsAfter[role]! - (syscallsBefore[role] ?? 0);
  const measured = latencies.slice(0, ops).sort();
  return { ops, errors, seconds: (measureEnd - measureStart) / 1000, latenciesMs: measured, cpuMicros, machine, ioSyscalls, firstError };
}

interface CpuSample {
  /** CPU time so far by role, µs ("client" is this process). */
  readonly byRole: Record<string, number>;
  readonly machineBusy: number;
  readonly machineSteal: number;
}

function sampleCpu(pids: Readonly<Record<string, number>>): CpuSample {
  const m = machineCpuMicros();
  const byRole: Record<string, number> = { client: selfCpuMicros() };
  for (const [role, pid] of Object.entries(pids)) byRole[role] = processCpuMicros(pid);
  return { byRole, machineBusy: m.busy, machineSteal: m.steal };
}

function sampleSyscalls(pids: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [role, pid] of Object.entries(pids)) out[role] = processIoSyscalls(pid);
  return out;
}

function enter(progress: Progress, phase: Progress['phase'], ms: number): void {
  progress.phase = phase;
  progress.phaseStartedAt = performance.now();
  progress.phaseMs = ms;
  progress.ops = 0;
  progress.errors = 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
