import { performance } from 'node:perf_hooks';
import { machineCpuMicros, processCpuMicros, processIoSyscalls, processRssBytes, selfCpuMicros } from './cpu.ts';

/** What the progress line shows; the loop updates it in place. */
export interface Progress {
  phase: 'starting' | 'setup' | 'warm-up' | 'measure' | 'teardown';
  phaseStartedAt: number;
  phaseMs: number;
  ops: number;
  errors: number;
}

/**
 * A closed loop: `concurrency` virtual users, each running `op` back to back. `setup` runs once
 * per virtual user (untimed); the loop then runs in slices, each a short warm-up (not recorded)
 * and a timed phase, so that slices of different scenarios can be interleaved.
 */
export interface LoopSpec<S> {
  readonly concurrency: number;
  /** Per virtual user, untimed (e.g. open a session). */
  setup(vu: number): Promise<S>;
  /**
   * One timed operation. Resolves true when the answer was right; false or a rejection is an
   * error. An op that times only part of itself (a resume: the GET, not the request it resumes)
   * resolves `{ ok, ms }` with the latency to record.
   */
  op(state: S): Promise<boolean | TimedOp>;
  teardown?(state: S): Promise<void>;
}

export interface TimedOp {
  readonly ok: boolean;
  readonly ms: number;
}

/** What one timed phase measured. Slices of the same row add up (see `Tally`). */
export interface Slice {
  readonly ops: number;
  readonly errors: number;
  /** Wall time of the timed phase, ms. */
  readonly wallMs: number;
  /** Latency of every op completed in the timed phase, ms, unsorted. */
  readonly latenciesMs: Float64Array;
  /** CPU time used during the timed phase, µs, by role ("client" is this process). */
  readonly cpuMicros: Readonly<Record<string, number>>;
  /** CPU time the whole machine was busy (user, system, irq) during the timed phase, µs. */
  readonly machineBusyMicros: number;
  readonly machineStealMicros: number;
  /** Read/write-family system calls made during the timed phase, by role (not "client"). */
  readonly ioSyscalls: Readonly<Record<string, number>>;
  /** Resident memory at the end of the slice, bytes, by role (not "client"). */
  readonly rssBytes: Readonly<Record<string, number>>;
  readonly firstError: string | undefined;
}

export class ClosedLoop<S> {
  readonly #spec: LoopSpec<S>;
  readonly #states: S[];

  private constructor(spec: LoopSpec<S>, states: S[]) {
    this.#spec = spec;
    this.#states = states;
  }

  static async open<S>(spec: LoopSpec<S>): Promise<ClosedLoop<S>> {
    const states = await Promise.all(Array.from({ length: spec.concurrency }, (_, vu) => spec.setup(vu)));
    return new ClosedLoop(spec, states);
  }

  /** Runs every virtual user for `warmupMs` unrecorded, then `measureMs` recorded; a measureMs of 0 only warms. */
  async slice(warmupMs: number, measureMs: number, pids: Readonly<Record<string, number>>, progress: Progress): Promise<Slice> {
    // An object, not a let: the timers below change it while virtual users await.
    const clock: { phase: 'warm-up' | 'measure' | 'done' } = { phase: 'warm-up' };
    const phaseNow = () => clock.phase;
    let measureStart = Infinity;
    let latencies = new Float64Array(1 << 14);
    let ops = 0;
    let errors = 0;
    let firstError: string | undefined;
    const op = this.#spec.op;

    const user = async (state: S) => {
      while (clock.phase !== 'done') {
        const t0 = performance.now();
        let ok: boolean;
        let ms: number | undefined;
        try {
          const r = await op(state);
          if (typeof r === 'boolean') ok = r;
          else ({ ok, ms } = r);
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
          latencies[ops++] = ms ?? t1 - t0;
          if (!ok) errors++;
        }
        progress.ops++;
        if (!ok) progress.errors++;
      }
    };

    enter(progress, 'warm-up', warmupMs);
    const users = Promise.all(this.#states.map(user));
    await sleep(warmupMs);
    if (measureMs <= 0) {
      clock.phase = 'done';
      await users;
      return { ops: 0, errors: 0, wallMs: 0, latenciesMs: new Float64Array(0), cpuMicros: {}, machineBusyMicros: 0, machineStealMicros: 0, ioSyscalls: {}, rssBytes: {}, firstError };
    }
    const before = sample(pids);
    measureStart = performance.now();
    clock.phase = 'measure';
    enter(progress, 'measure', measureMs);
    await sleep(measureMs);
    const after = sample(pids);
    const measureEnd = performance.now();
    clock.phase = 'done';
    await users;

    const cpuMicros: Record<string, number> = {};
    for (const role of Object.keys(after.cpu)) cpuMicros[role] = after.cpu[role]! - (before.cpu[role] ?? 0);
    const ioSyscalls: Record<string, number> = {};
    for (const role of Object.keys(after.syscalls)) ioSyscalls[role] = after.syscalls[role]! - (before.syscalls[role] ?? 0);
    const rssBytes: Record<string, number> = {};
    for (const [role, pid] of Object.entries(pids)) rssBytes[role] = processRssBytes(pid);
    return {
      ops,
      errors,
      wallMs: measureEnd - measureStart,
      latenciesMs: latencies.subarray(0, ops),
      cpuMicros,
      machineBusyMicros: after.machineBusy - before.machineBusy,
      machineStealMicros: after.machineSteal - before.machineSteal,
      ioSyscalls,
      rssBytes,
      firstError,
    };
  }

  async close(): Promise<void> {
    const teardown = this.#spec.teardown;
    if (teardown) await Promise.all(this.#states.map((s) => teardown(s)));
  }
}

interface Sample {
  readonly cpu: Record<string, number>;
  readonly syscalls: Record<string, number>;
  readonly machineBusy: number;
  readonly machineSteal: number;
}

function sample(pids: Readonly<Record<string, number>>): Sample {
  const m = machineCpuMicros();
  const cpu: Record<string, number> = { client: selfCpuMicros() };
  const syscalls: Record<string, number> = {};
  for (const [role, pid] of Object.entries(pids)) {
    cpu[role] = processCpuMicros(pid);
    syscalls[role] = processIoSyscalls(pid);
  }
  return { cpu, syscalls, machineBusy: m.busy, machineSteal: m.steal };
}

/** Starts a phase on the progress line: its clock (`ms` long, 0: open-ended) and counts. */
export function enter(progress: Progress, phase: Progress['phase'], ms: number): void {
  progress.phase = phase;
  progress.phaseStartedAt = performance.now();
  progress.phaseMs = ms;
  progress.ops = 0;
  progress.errors = 0;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
