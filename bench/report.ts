import type { LoopResult } from './loop.ts';

/** One (scenario, workload) measurement, as printed and as written to results.json. */
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
  /** Cores busy on the whole machine during the timed phase; `otherCores` is work not ours (noise). */
  readonly machine: LoopResult['machine'];
  /** Against the scenario's baseline (same upstream, direct), same workload. */
  readonly vsBaseline: { readonly baseline: string; readonly throughputRatio: number; readonly p50DeltaMs: number; readonly p99DeltaMs: number } | undefined;
  readonly firstError?: string;
}

export function toRow(scenario: string, workload: string, r: LoopResult): Row {
  const lat = r.latenciesMs;
  let sum = 0;
  for (const v of lat) sum += v;
  const cpuMicrosPerReq: Record<string, number> = {};
  for (const [role, micros] of Object.entries(r.cpuMicros)) cpuMicrosPerReq[role] = r.ops ? micros / r.ops : 0;
  const ioSyscallsPerReq: Record<string, number> = {};
  for (const [role, n] of Object.entries(r.ioSyscalls)) ioSyscallsPerReq[role] = r.ops ? Math.round((n / r.ops) * 100) / 100 : 0;
  const reqPerSec = r.seconds > 0 ? r.ops / r.seconds : 0;
  const p50Ms = percentile(lat, 0.5);
  const p99Ms = percentile(lat, 0.99);
  return {
    scenario,
    workload,
    requests: r.ops,
    errors: r.errors,
    seconds: r.seconds,
    reqPerSec,
    p50Ms,
    p90Ms: percentile(lat, 0.9),
    p99Ms,
    meanMs: lat.length ? sum / lat.length : 0,
    maxMs: lat.length ? lat[lat.length - 1]! : 0,
    cpuMicrosPerReq,
    ioSyscallsPerReq,
    machine: r.machine,
    vsBaseline: undefined,
    ...(r.firstError ? { firstError: r.firstError } : {}),
  };
}

/** Each row compared with its baseline row (same workload); `baselineOf` maps a scenario to its baseline. */
export function withBaselines(rows: readonly Row[], baselineOf: (scenario: string) => string): Row[] {
  return rows.map((row) => {
    const id = baselineOf(row.scenario);
    const b = rows.find((r) => r.scenario === id && r.workload === row.workload);
    if (!b) return row;
    const throughputRatio = b.reqPerSec ? row.reqPerSec / b.reqPerSec : 0;
    return { ...row, vsBaseline: { baseline: id, throughputRatio, p50DeltaMs: row.p50Ms - b.p50Ms, p99DeltaMs: row.p99Ms - b.p99Ms } };
  });
}

/** Cores of other work on the machine above which a row is flagged as disturbed. */
export const NOISY_CORES = 0.25;

export function noisy(row: Row): boolean {
  return row.machine.otherCores > NOISY_CORES;
}

/**
 * With several rounds, each (scenario, workload) is represented by its median-throughput round
 * (the lower median for an even count) among the rounds that other work on the machine left
 * undisturbed, or among all if none was: a whole measured row, not a blend of rounds.
 */
export function medianRows(rounds: readonly (readonly Row[])[]): Row[] {
  const out: Row[] = [];
  for (const first of rounds[0] ?? []) {
    const runs = rounds
      .map((rows) => rows.find((r) => r.scenario === first.scenario && r.workload === first.workload))
      .filter((r): r is Row => r !== undefined);
    const quiet = runs.filter((r) => !noisy(r));
    const pool = (quiet.length ? quiet : runs).sort((a, b) => a.reqPerSec - b.reqPerSec);
    out.push(pool[Math.floor((pool.length - 1) / 2)]!);
  }
  return out;
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
    cpu('hop'),
    cpu('upstream'),
    cpu('client'),
    (noisy(row) ? '! ' : '') + fixed(row.machine.otherCores, 2),
    String(row.errors),
  ];
}

export const ROW_HEADER = ['scenario', 'workload', 'req/s', 'vs direct', 'p50 ms', 'p99 ms', 'Δp50 ms', 'hop CPU µs/req', 'upstream CPU µs/req', 'client CPU µs/req', 'other load (cores)', 'errors'];
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
