import type { Slice } from './loop.ts';

/**
 * One (scenario, workload) measurement, as printed and as written to results.json. An "op" is one
 * request for the call/read workloads, one streamed call for sse, one session cycle for churn, one
 * resumption for resume (the fields keep their request-era names: `requests`, `reqPerSec`, `…PerReq`).
 */
export interface Row {
  readonly scenario: string;
  readonly workload: string;
  readonly requests: number;
  readonly errors: number;
  readonly seconds: number;
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  readonly maxMs: number;
  /** CPU time per request during the timed phase, by role: hop (gateway/floor), upstream, client. */
  readonly cpuMicrosPerReq: Readonly<Record<string, number>>;
  /** Read/write-family system calls per request, by role (a proxy's floor is about 4: two reads, two writes). */
  readonly ioSyscallsPerReq: Readonly<Record<string, number>>;
  /** Resident memory at the end of the row's last slice, MiB, by role (a hop that grows with every call shows here). */
  readonly rssMiB: Readonly<Record<string, number>>;
  /** Cores busy on the whole machine during the timed phase; `otherCores` is work not ours (noise). */
  readonly machine: { readonly busyCores: number; readonly otherCores: number; readonly stealCores: number };
  /** Timed slices this row is the sum of. */
  readonly slices: number;
  /** Against the scenario's baseline (same upstream, direct), same workload. */
  readonly vsBaseline: { readonly baseline: string; readonly throughputRatio: number; readonly p50DeltaMs: number; readonly p99DeltaMs: number } | undefined;
  /** Gateway rows: against the bare undici hop in front of the same upstream, same workload (the gateway's own work). */
  readonly vsFloor?: { readonly floor: string; readonly throughputRatio: number; readonly p50DeltaMs: number; readonly hopCpuExtraMicros: number | undefined };
  /** SSE workloads: the cost per event, against the plain call row of the same scenario (`withSseCosts`). */
  readonly sse?: SseStats;
  /** The idle-streams workload (bench/idle.ts). */
  readonly idle?: IdleStats;
  readonly firstError?: string;
}

export interface SseStats {
  /** Progress notifications per call; each call's answer is one event more. */
  readonly progressPerCall: number;
  readonly eventsPerSec: number;
  /** The plain `tools/call` row this one is read against, and its CPU per call by role. */
  readonly plainWorkload: string;
  readonly plainCpuMicrosPerCall: Readonly<Record<string, number>>;
  /** (CPU per streamed call − CPU per plain call) ÷ progress events, µs, by role. */
  readonly cpuMicrosPerEvent: Readonly<Record<string, number>>;
  /** gateway + Redis rows: hop CPU per event minus that of the same gateway with the memory log. */
  readonly redisExtraHopMicrosPerEvent?: number;
}

export interface IdleStats {
  /** Streams asked for, and opened (fewer when the open-files limits left no room: `limitedBy`). */
  readonly requested: number;
  readonly streams: number;
  readonly failed: number;
  readonly limitedBy?: string;
  /** Seconds to open all the streams (after the sessions). */
  readonly openSeconds: number;
  /** Resident memory, MiB, by role: fresh process, with the sessions open, with their streams open too. */
  readonly rssMiB: Readonly<Record<string, { readonly fresh: number; readonly sessions: number; readonly streams: number }>>;
  /** RSS growth per open stream (sessions already open), bytes, by role. */
  readonly bytesPerStream: Readonly<Record<string, number>>;
  /** The hop's whole RSS with 10,000 streams, MB (10^6 bytes); when fewer opened, plus `bytesPerStream` for each missing one. */
  readonly hopMBAt10k?: number;
  readonly extrapolated: boolean;
  /** CPU the hop used while the streams sat idle, in cores. */
  readonly hopIdleCores?: number;
}

/** A row with nothing measured yet, for workloads that are not closed loops. */
export function emptyRow(scenario: string, workload: string): Row {
  return {
    scenario,
    workload,
    requests: 0,
    errors: 0,
    seconds: 0,
    reqPerSec: 0,
    p50Ms: 0,
    p90Ms: 0,
    p99Ms: 0,
    meanMs: 0,
    maxMs: 0,
    cpuMicrosPerReq: {},
    ioSyscallsPerReq: {},
    rssMiB: {},
    machine: { busyCores: 0, otherCores: 0, stealCores: 0 },
    slices: 0,
    vsBaseline: undefined,
  };
}

/** The slices of one (scenario, workload) row, added up. */
export class Tally {
  readonly scenario: string;
  readonly workload: string;
  #slices = 0;
  #ops = 0;
  #errors = 0;
  #wallMs = 0;
  #latencies: Float64Array[] = [];
  readonly #cpu: Record<string, number> = {};
  readonly #syscalls: Record<string, number> = {};
  #rss: Readonly<Record<string, number>> = {};
  #busy = 0;
  #other = 0;
  #steal = 0;
  #firstError: string | undefined;

  constructor(scenario: string, workload: string) {
    this.scenario = scenario;
    this.workload = workload;
  }

  get ops(): number {
    return this.#ops;
  }

  add(slice: Slice): void {
    this.#slices++;
    this.#ops += slice.ops;
    this.#errors += slice.errors;
    this.#wallMs += slice.wallMs;
    this.#latencies.push(slice.latenciesMs.slice());
    let ours = 0;
    for (const [role, micros] of Object.entries(slice.cpuMicros)) {
      this.#cpu[role] = (this.#cpu[role] ?? 0) + micros;
      ours += micros;
    }
    for (const [role, n] of Object.entries(slice.ioSyscalls)) this.#syscalls[role] = (this.#syscalls[role] ?? 0) + n;
    this.#rss = slice.rssBytes;
    this.#busy += slice.machineBusyMicros;
    this.#other += Math.max(0, slice.machineBusyMicros - ours);
    this.#steal += slice.machineStealMicros;
    this.#firstError ??= slice.firstError;
  }

  row(): Row {
    const lat = new Float64Array(this.#ops);
    let at = 0;
    for (const l of this.#latencies) {
      lat.set(l, at);
      at += l.length;
    }
    lat.sort();
    let sum = 0;
    for (const v of lat) sum += v;
    const ops = this.#ops;
    const seconds = this.#wallMs / 1000;
    const wallMicros = this.#wallMs * 1000 || 1;
    const perReq = (n: number, digits: number) => (ops ? Math.round((n / ops) * 10 ** digits) / 10 ** digits : 0);
    const cpuMicrosPerReq: Record<string, number> = {};
    for (const [role, micros] of Object.entries(this.#cpu)) cpuMicrosPerReq[role] = perReq(micros, 1);
    const ioSyscallsPerReq: Record<string, number> = {};
    for (const [role, n] of Object.entries(this.#syscalls)) ioSyscallsPerReq[role] = perReq(n, 2);
    return {
      scenario: this.scenario,
      workload: this.workload,
      requests: ops,
      errors: this.#errors,
      seconds,
      reqPerSec: seconds > 0 ? ops / seconds : 0,
      p50Ms: percentile(lat, 0.5),
      p90Ms: percentile(lat, 0.9),
      p99Ms: percentile(lat, 0.99),
      meanMs: lat.length ? sum / lat.length : 0,
      maxMs: lat.length ? lat[lat.length - 1]! : 0,
      cpuMicrosPerReq,
      ioSyscallsPerReq,
      rssMiB: Object.fromEntries(Object.entries(this.#rss).map(([role, b]) => [role, Math.round(b / 2 ** 20)])),
      machine: { busyCores: this.#busy / wallMicros, otherCores: this.#other / wallMicros, stealCores: this.#steal / wallMicros },
      slices: this.#slices,
      vsBaseline: undefined,
      ...(this.#firstError ? { firstError: this.#firstError } : {}),
    };
  }
}

/**
 * Each row compared with its baseline row (same workload), and a gateway row with its floor row
 * too; `baselineOf` and `floorOf` map a scenario to those.
 */
export function withBaselines(rows: readonly Row[], baselineOf: (scenario: string) => string, floorOf: (scenario: string) => string | undefined = () => undefined): Row[] {
  return rows.map((row) => {
    if (row.idle) return row;
    const id = baselineOf(row.scenario);
    const b = rows.find((r) => r.scenario === id && r.workload === row.workload);
    if (!b) return row;
    const throughputRatio = b.reqPerSec ? row.reqPerSec / b.reqPerSec : 0;
    const out: Row = { ...row, vsBaseline: { baseline: id, throughputRatio, p50DeltaMs: row.p50Ms - b.p50Ms, p99DeltaMs: row.p99Ms - b.p99Ms } };
    const floorId = floorOf(row.scenario);
    const f = floorId && rows.find((r) => r.scenario === floorId && r.workload === row.workload);
    if (!f) return out;
    const mine = row.cpuMicrosPerReq.hop;
    const theirs = f.cpuMicrosPerReq.hop;
    const hopCpuExtraMicros = mine !== undefined && theirs !== undefined ? mine - theirs : undefined;
    return { ...out, vsFloor: { floor: f.scenario, throughputRatio: f.reqPerSec ? row.reqPerSec / f.reqPerSec : 0, p50DeltaMs: row.p50Ms - f.p50Ms, hopCpuExtraMicros } };
  });
}

/**
 * SSE rows get their cost per event: the streamed call's CPU minus the plain call's (same
 * scenario, `plain[workload]`), over its progress events. `memoryTwin` names, for a gateway +
 * Redis scenario, the same gateway with the memory log.
 */
export function withSseCosts(rows: readonly Row[], perCall: Readonly<Record<string, { progress: number; plain: string }>>, memoryTwin: (scenario: string) => string | undefined): Row[] {
  const costed = rows.map((row): Row => {
    const spec = perCall[row.workload];
    const plain = spec && rows.find((r) => r.scenario === row.scenario && r.workload === spec.plain);
    if (!spec || !plain || !row.requests) return row;
    const cpuMicrosPerEvent: Record<string, number> = {};
    for (const [role, micros] of Object.entries(row.cpuMicrosPerReq)) {
      const base = plain.cpuMicrosPerReq[role];
      if (base !== undefined) cpuMicrosPerEvent[role] = Math.round(((micros - base) / spec.progress) * 10) / 10;
    }
    const sse: SseStats = {
      progressPerCall: spec.progress,
      eventsPerSec: row.reqPerSec * (spec.progress + 1),
      plainWorkload: spec.plain,
      plainCpuMicrosPerCall: plain.cpuMicrosPerReq,
      cpuMicrosPerEvent,
    };
    return { ...row, sse };
  });
  return costed.map((row) => {
    const twinId = row.sse && memoryTwin(row.scenario);
    const twin = twinId && costed.find((r) => r.scenario === twinId && r.workload === row.workload);
    const mine = row.sse?.cpuMicrosPerEvent.hop;
    const theirs = twin ? twin.sse?.cpuMicrosPerEvent.hop : undefined;
    if (!row.sse || mine === undefined || theirs === undefined) return row;
    return { ...row, sse: { ...row.sse, redisExtraHopMicrosPerEvent: Math.round((mine - theirs) * 10) / 10 } };
  });
}

/** Cores of other work on the machine above which a row is flagged as disturbed. */
export const NOISY_CORES = 0.25;

export function noisy(row: Row): boolean {
  return row.machine.otherCores > NOISY_CORES;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

const DASH = '—';

export function rowCells(row: Row): string[] {
  const v = row.vsBaseline;
  const self = v && v.baseline === row.scenario;
  const cpu = (role: string) => (row.cpuMicrosPerReq[role] === undefined ? DASH : fixed(row.cpuMicrosPerReq[role]!, 0));
  return [
    row.scenario,
    row.workload,
    fixed(row.reqPerSec, 0),
    v ? fixed(v.throughputRatio, 2) + '×' : DASH,
    fixed(row.p50Ms, 2),
    fixed(row.p99Ms, 2),
    v && !self ? signed(v.p50DeltaMs, 2) : DASH,
    row.vsFloor ? fixed(row.vsFloor.throughputRatio, 2) + '×' : DASH,
    row.vsFloor ? signed(row.vsFloor.p50DeltaMs, 2) : DASH,
    cpu('hop'),
    row.vsFloor?.hopCpuExtraMicros === undefined ? DASH : signed(row.vsFloor.hopCpuExtraMicros, 0),
    cpu('upstream'),
    cpu('client'),
    row.rssMiB.hop === undefined ? DASH : String(row.rssMiB.hop),
    (noisy(row) ? '! ' : '') + fixed(row.machine.otherCores, 2),
    String(row.errors),
  ];
}

export const ROW_HEADER = ['scenario', 'workload', 'ops/s', 'vs direct', 'p50 ms', 'p99 ms', 'Δp50 ms', 'vs floor', 'Δp50 vs floor ms', 'hop CPU µs/op', 'over floor µs/op', 'upstream CPU µs/op', 'client CPU µs/op', 'hop RSS MiB', 'other load (cores)', 'errors'];

export const SSE_HEADER = ['scenario', 'workload', 'calls/s', 'events/s', 'hop CPU µs/call', 'plain call µs', 'hop CPU µs/event', 'Redis log extra µs/event', 'redis-server µs/event', 'upstream µs/event', 'errors'];

export function sseCells(row: Row): string[] {
  const s = row.sse!;
  const plain = (role: string) => (s.plainCpuMicrosPerCall[role] === undefined ? DASH : fixed(s.plainCpuMicrosPerCall[role]!, 0));
  const perEvent = (role: string) => (s.cpuMicrosPerEvent[role] === undefined ? DASH : fixed(s.cpuMicrosPerEvent[role]!, 1));
  return [
    row.scenario,
    row.workload,
    fixed(row.reqPerSec, 0),
    fixed(s.eventsPerSec, 0),
    row.cpuMicrosPerReq.hop === undefined ? DASH : fixed(row.cpuMicrosPerReq.hop, 0),
    plain('hop'),
    perEvent('hop'),
    s.redisExtraHopMicrosPerEvent === undefined ? DASH : signed(s.redisExtraHopMicrosPerEvent, 1),
    perEvent('redis'),
    perEvent('upstream'),
    String(row.errors),
  ];
}

export const IDLE_HEADER = ['scenario', 'streams', 'open s', 'hop RSS MiB (fresh → sessions → streams)', 'hop KiB/stream', 'hop MB at 10k', 'upstream KiB/stream', 'hop idle CPU (cores)', 'failed'];

export function idleCells(row: Row): string[] {
  const s = row.idle!;
  const hop = s.rssMiB.hop;
  const kib = (role: string) => (s.bytesPerStream[role] === undefined ? DASH : fixed(s.bytesPerStream[role]! / 1024, 1));
  return [
    row.scenario,
    s.streams.toLocaleString('en-US') + (s.limitedBy ? ' *' : ''),
    fixed(s.openSeconds, 1),
    hop ? `${fixed(hop.fresh, 0)} → ${fixed(hop.sessions, 0)} → ${fixed(hop.streams, 0)}` : DASH,
    kib('hop'),
    s.hopMBAt10k === undefined ? DASH : fixed(s.hopMBAt10k, 0) + (s.extrapolated ? ' (extrapolated)' : ''),
    kib('upstream'),
    s.hopIdleCores === undefined ? DASH : fixed(s.hopIdleCores, 3),
    String(s.failed),
  ];
}
const NUMERIC_FROM = 2;

/** A Markdown table, padded so it also reads in a terminal. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[], numericFrom = NUMERIC_FROM): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    '| ' + cells.map((c, i) => (i >= numericFrom ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ') + ' |';
  const rule = '|' + widths.map((w, i) => (i >= numericFrom ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|';
  return [line(header), rule, ...rows.map(line)].join('\n');
}

export function fixed(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function signed(n: number, digits: number): string {
  return (n >= 0 ? '+' : '−') + fixed(Math.abs(n), digits);
}
