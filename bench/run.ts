/**
 * `npm run bench`: starts every scenario's processes, drives each workload against all of them in
 * interleaved slices, prints one table of scenarios × workloads plus the targets, and writes
 * bench/results.json. Everything runs on this machine: load generator, upstreams and hops share
 * its CPUs, and interleaving spreads whatever else the machine is doing evenly over the rows.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuResolutionMicros } from './cpu.ts';
import type { Progress } from './loop.ts';
import { stopAll } from './processes.ts';
import { idleCells, IDLE_HEADER, markdownTable, noisy, NOISY_CORES, ROW_HEADER, rowCells, sseCells, SSE_HEADER, Tally, withBaselines, withSseCosts, type Row } from './report.ts';
import { idleStreams } from './idle.ts';
import { echoCalls, hopDriver } from './hop.ts';
import { McpHttpClient } from './mcp-client.ts';
import { SCENARIOS, startScenario, type RunningScenario, type Scenario } from './scenarios.ts';
import { judge, TARGETS } from './targets.ts';
import { workloadTable, type OnceWorkload, type SlicedWorkload, type Workload } from './workloads.ts';

/** Unrecorded run-in before each timed slice: refills queues and connections after the pause. */
const SLICE_WARMUP_MS = 250;

const usage = (workloads: readonly Workload[]) => `Usage: npm run bench -- [options]     (each option also reads an environment variable)

  --seconds N          timed seconds per row (and idle hold)   BENCH_SECONDS     (3)
  --slice N            seconds per timed slice                 BENCH_SLICE       (1)
  --warmup N           warm-up per row before its slices       BENCH_WARMUP      (2)
  --warmup-calls N     tools/call echo calls each scenario     BENCH_WARMUP_CALLS (15000)
                       gets once started (JIT), 0: none; with
                       churn, N/4 whole sessions too
  --concurrency LIST   sessions for the call/read workloads;   BENCH_CONCURRENCY (16,1)
                       sse and churn use the first
  --sse-events N       progress events per SSE call            BENCH_SSE_EVENTS  (20)
  --idle-streams N     idle SSE streams per scenario           BENCH_IDLE_STREAMS (10000)
  --scenarios LIST     scenario ids (baselines are added);     BENCH_SCENARIOS   (all)
                       json-* run churn only when named
  --workloads LIST     workload ids (those they are read       BENCH_WORKLOADS   (the default set)
                       against are added)
  --out FILE           results file                            BENCH_OUT         (bench/results.json)
  --hop-node-args=FLAGS  node flags for the hop processes      BENCH_HOP_NODE_ARGS
                       (gateway and floor), e.g. --hop-node-args="--cpu-prof --cpu-prof-dir=/tmp/prof"
  --check              exit 1 when a judged target fails

Each row's timed seconds are split into slices, and the slices of all scenarios take turns
(rotating order), so a burst of other work on the machine lands on every row alike.

Scenarios: ${SCENARIOS.map((s) => s.id).join(', ')}
Workloads: ${workloads.map((w) => w.id + (w.byDefault ? '' : ' (not by default)')).join(', ')}
`;

interface Options {
  seconds: number;
  slice: number;
  warmup: number;
  /** tools/call echo calls each scenario gets once started: the gateway's code is warm (optimized) after ≈ 15,000. */
  warmupCalls: number;
  concurrency: number[];
  sseEvents: number;
  idleStreams: number;
  scenarios: Scenario[];
  workloads: Workload[];
  out: string;
  hopNodeArgs: string[];
  check: boolean;
}

function parseOptions(): Options | undefined {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      'warmup-calls': { type: 'string' },
      slice: { type: 'string' },
      concurrency: { type: 'string' },
      'sse-events': { type: 'string' },
      'idle-streams': { type: 'string' },
      scenarios: { type: 'string' },
      workloads: { type: 'string' },
      out: { type: 'string' },
      'hop-node-args': { type: 'string' },
      check: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const env = process.env;
  const num = (name: string, v: string | undefined, dflt: number) => {
    const n = v === undefined || v === '' ? dflt : Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${v}"`);
    return n;
  };
  const list = (v: string | undefined) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined);

  const concurrency = (list(values.concurrency ?? env.BENCH_CONCURRENCY) ?? ['16', '1']).map((c) => {
    const n = Number(c);
    if (!Number.isInteger(n) || n < 1) throw new Error(`concurrency must be positive integers, got "${c}"`);
    return n;
  });

  const wantScenarios = list(values.scenarios ?? env.BENCH_SCENARIOS);
  for (const id of wantScenarios ?? []) if (!SCENARIOS.some((s) => s.id === id)) throw new Error(`unknown scenario "${id}"`);
  // A row is read against its baseline (and a gateway row against its floor), so selecting a scenario brings those along.
  const ids = new Set(wantScenarios ?? SCENARIOS.map((s) => s.id));
  for (const s of SCENARIOS) {
    if (!ids.has(s.id)) continue;
    ids.add(s.baseline);
    if (s.floor) ids.add(s.floor);
  }
  // A run that names its scenarios runs every kind they serve; the default run, only their `kindsByDefault`.
  const scenarios = SCENARIOS.filter((s) => ids.has(s.id)).map((s) => (wantScenarios || !s.kindsByDefault ? s : { ...s, kinds: s.kindsByDefault }));

  const sseEvents = num('--sse-events', values['sse-events'] ?? env.BENCH_SSE_EVENTS, 20);
  const idleCount = num('--idle-streams', values['idle-streams'] ?? env.BENCH_IDLE_STREAMS, 10_000);
  if (!Number.isInteger(sseEvents) || sseEvents < 1) throw new Error(`--sse-events must be a positive integer, got "${sseEvents}"`);
  if (!Number.isInteger(idleCount) || idleCount < 1) throw new Error(`--idle-streams must be a positive integer, got "${idleCount}"`);
  const allWorkloads = workloadTable({ concurrency, sseSteps: sseEvents, idle: idleStreams(idleCount) });
  if (values.help) {
    process.stdout.write(usage(allWorkloads));
    return undefined;
  }
  const wantWorkloads = list(values.workloads ?? env.BENCH_WORKLOADS);
  for (const id of wantWorkloads ?? []) if (!allWorkloads.some((w) => w.id === id)) throw new Error(`unknown workload "${id}" (have: ${allWorkloads.map((w) => w.id).join(', ')})`);
  // A row read against another workload's row (SSE against plain calls) brings that workload along.
  const wanted = new Set(wantWorkloads ?? allWorkloads.filter((w) => w.byDefault).map((w) => w.id));
  for (const w of allWorkloads) if (wanted.has(w.id)) for (const n of w.needs ?? []) wanted.add(n);
  const workloads = allWorkloads.filter((w) => wanted.has(w.id));

  return {
    seconds: num('--seconds', values.seconds ?? env.BENCH_SECONDS, 3),
    warmup: num('--warmup', values.warmup ?? env.BENCH_WARMUP, 2),
    warmupCalls: num('--warmup-calls', values['warmup-calls'] ?? env.BENCH_WARMUP_CALLS, 15_000),
    slice: num('--slice', values.slice ?? env.BENCH_SLICE, 1),
    concurrency,
    sseEvents,
    idleStreams: idleCount,
    scenarios,
    workloads,
    out: values.out ?? env.BENCH_OUT ?? fileURLToPath(new URL('results.json', import.meta.url)),
    hopNodeArgs: (values['hop-node-args'] ?? env.BENCH_HOP_NODE_ARGS ?? '').split(/\s+/).filter(Boolean),
    check: values.check ?? false,
  };
}

/** Which gateway code was measured: the commit, and whether src/ had uncommitted changes. */
function gitState(): { commit: string; srcDirty: boolean } | undefined {
  const cwd = fileURLToPath(new URL('..', import.meta.url));
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { commit, srcDirty: status.trim() !== '' };
  } catch {
    return undefined;
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    cpus: os.availableParallelism(),
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

/** A one-line status on stderr: rewritten in place on a terminal, a line every few seconds otherwise. */
class ProgressLine {
  readonly progress: Progress = { phase: 'setup', phaseStartedAt: 0, phaseMs: 0, ops: 0, errors: 0 };
  label = '';
  #timer: NodeJS.Timeout | undefined;
  readonly #tty = process.stderr.isTTY === true;

  start(): void {
    this.#timer = setInterval(() => this.#render(), this.#tty ? 250 : 5_000);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    if (this.#tty) process.stderr.write('\r\x1b[K');
  }

  log(line: string): void {
    process.stderr.write((this.#tty ? '\r\x1b[K' : '') + line + '\n');
  }

  #render(): void {
    const p = this.progress;
    const elapsed = (performance.now() - p.phaseStartedAt) / 1000;
    const clock = p.phaseMs ? ` ${Math.min(elapsed, p.phaseMs / 1000).toFixed(1)}/${+(p.phaseMs / 1000).toFixed(2)} s` : '';
    const counts = p.phase === 'warm-up' || p.phase === 'measure' ? ` · ${p.ops.toLocaleString('en-US')} ops · ${p.errors} errors` : '';
    const text = `${this.label} · ${p.phase}${clock}${counts}`;
    process.stderr.write(this.#tty ? `\r\x1b[K${text}` : `${text}\n`);
  }
}

async function main(): Promise<number> {
  const opts = parseOptions();
  if (!opts) return 0;
  if (Number(process.versions.node.split('.')[0]) < 24) throw new Error(`Node 24 or later is required (this is ${process.version}); run it with npm run bench`);
  if (opts.scenarios.some((s) => s.hop.startsWith('gateway')) && !existsSync(new URL('../dist/cli.js', import.meta.url))) {
    throw new Error('dist/cli.js is missing: run `npm run build` (npm run bench does)');
  }

  const host = machine();
  const git = gitState();
  const started = new Date();
  const out = process.stdout;
  const code = git ? ` · code ${git.commit.slice(0, 7)}${git.srcDirty ? ' + uncommitted src/ changes' : ''}` : '';
  out.write(`mcp-gateway bench · ${started.toISOString()} · Node ${process.version}${code}\n`);
  out.write(`machine: ${host.cpus} CPUs (${host.cpuModel}), ${host.memoryGiB} GiB, ${host.os}, load ${host.loadAverageAtStart.join(' ')}\n`);
  if (host.cpus < 4) {
    out.write(`note: only ${host.cpus} CPUs: the load generator, the upstream and the hop compete for them, so a hop's CPU cost shows up directly as lost throughput.\n`);
  }
  const slices = Math.max(1, Math.round(opts.seconds / opts.slice));
  const sliceMs = (opts.seconds * 1000) / slices;
  out.write(`${opts.warmupCalls > 0 ? `each scenario first gets ${opts.warmupCalls.toLocaleString('en-US')} tools/call echo calls (its code warm)${opts.workloads.some((w) => w.kind === 'churn') ? `, and a churn row's a quarter as many whole sessions` : ''}; ` : ''}rows: ${opts.warmup} s warm-up, then ${opts.seconds} s timed in ${slices} slices taking turns with the other scenarios; CPU time from /proc/<pid>/stat (resolution ${cpuResolutionMicros / 1000} ms per process)\n\n`);

  const applies = (w: Workload, s: Scenario) => (!s.kinds || s.kinds.includes(w.kind)) && (w.appliesTo?.(s) ?? true);
  const sliced = opts.workloads.filter((w): w is SlicedWorkload => w.mode === 'sliced');
  const once = opts.workloads.filter((w): w is OnceWorkload => w.mode === 'once');
  const line = new ProgressLine();
  line.start();
  const running = new Map<string, RunningScenario>();
  const measured: Row[] = [];
  let step = 0;
  try {
    // Only scenarios a sliced workload runs against are started up front; `once` workloads start their own.
    for (const scenario of opts.scenarios.filter((s) => sliced.some((w) => applies(w, s)))) {
      line.label = `starting ${scenario.id}`;
      line.progress.phase = 'starting';
      line.progress.phaseMs = 0;
      const run = await startScenario(scenario, { hopNodeArgs: opts.hopNodeArgs });
      running.set(scenario.id, run);
      // Each row's own warm-up is seconds; the gateway's code needs ≈ 15,000 calls to be optimized,
      // which rows in front of the demo upstream (≈ 2,500 calls/s) would not reach (docs/performance.md).
      if (opts.warmupCalls > 0) {
        line.label = `warming ${scenario.id} up: ${opts.warmupCalls.toLocaleString('en-US')} calls`;
        await warmUp(run.url, opts.warmupCalls);
        // A churn row's start and end of a session (initialize, DELETE) are code the calls do not
        // run: whole sessions warm it too, as many requests again (docs/performance.md, "a
        // session's start and end").
        if (sliced.some((w) => w.kind === 'churn' && applies(w, scenario))) {
          const sessions = Math.round(opts.warmupCalls / 4);
          line.label = `warming ${scenario.id} up: ${sessions.toLocaleString('en-US')} whole sessions`;
          const driver = await hopDriver('churn', run.url, 16);
          await driver.run(sessions);
          await driver.close();
        }
      }
    }
    for (const workload of sliced) {
      const here = opts.scenarios.filter((s) => applies(workload, s));
      const tag = `[${workload.id} ${++step}/${opts.workloads.length}]`;
      const drivers = [];
      try {
        for (const s of here) {
          line.label = `${tag} ${s.id}`;
          line.progress.phase = 'setup';
          drivers.push({ s, run: running.get(s.id)!, driver: await workload.open(running.get(s.id)!), tally: new Tally(s.id, workload.id) });
        }
        for (const d of drivers) {
          line.label = `${tag} ${d.s.id}`;
          await d.driver.slice(opts.warmup * 1000, 0, d.run.pids, line.progress);
        }
        for (let k = 0; k < slices; k++) {
          for (let j = 0; j < drivers.length; j++) {
            const d = drivers[(j + k) % drivers.length]!;
            line.label = `${tag} slice ${k + 1}/${slices} ${d.s.id}`;
            d.tally.add(await d.driver.slice(SLICE_WARMUP_MS, sliceMs, d.run.pids, line.progress));
          }
        }
      } finally {
        line.label = `${tag} closing sessions`;
        line.progress.phase = 'teardown';
        for (const d of drivers) await d.driver.close();
      }
      for (const d of drivers) {
        const row = d.tally.row();
        measured.push(row);
        line.log(
          `${tag} ${d.s.id}: ${Math.round(row.reqPerSec)} ops/s, p50 ${row.p50Ms.toFixed(2)} ms, p99 ${row.p99Ms.toFixed(2)} ms, ` +
            `other load ${row.machine.otherCores.toFixed(2)} cores, ${row.errors} errors${row.firstError ? ` (first: ${row.firstError})` : ''}`,
        );
      }
    }
    // The sliced scenarios are done: their processes go before the once workloads start theirs.
    for (const [id, r] of running) {
      running.delete(id);
      await r.stop();
    }
    for (const workload of once) {
      const tag = `[${workload.id} ${++step}/${opts.workloads.length}]`;
      for (const s of opts.scenarios.filter((sc) => applies(workload, sc))) {
        line.label = `${tag} ${s.id}`;
        const row = await workload.run({
          scenario: s,
          start: (o) => startScenario(s, { hopNodeArgs: opts.hopNodeArgs, ...o }),
          progress: line.progress,
          holdMs: opts.seconds * 1000,
        });
        measured.push(row);
        const i = row.idle;
        line.log(
          `${tag} ${s.id}: ${i ? `${i.streams} streams, ${i.hopMBAt10k ?? '—'} MB hop at 10k${i.limitedBy ? ` (limited by the ${i.limitedBy})` : ''}, ` : ''}` +
            `${row.errors} errors${row.firstError ? ` (first: ${row.firstError})` : ''}`,
        );
      }
    }
  } finally {
    line.stop();
    for (const r of running.values()) await r.stop();
  }
  const baselineOf = (id: string) => SCENARIOS.find((s) => s.id === id)?.baseline ?? id;
  // Rows in scenario order, each scenario's workloads together.
  const ordered = opts.scenarios.flatMap((s) => measured.filter((r) => r.scenario === s.id));
  const perCall: Record<string, { progress: number; plain: string }> = {};
  for (const w of opts.workloads) if (w.progressPerOp && w.needs?.[0]) perCall[w.id] = { progress: w.progressPerOp, plain: w.needs[0] };
  const memoryTwin = (id: string) => (id.endsWith('gateway-redis') ? id.replace(/-redis$/, '') : undefined);
  const floorOf = (id: string) => SCENARIOS.find((s) => s.id === id)?.floor;
  const rows = withSseCosts(withBaselines(ordered, baselineOf, floorOf), perCall, memoryTwin);

  const loopRows = rows.filter((r) => !r.idle);
  const table = markdownTable(ROW_HEADER, loopRows.map(rowCells));
  out.write(table + '\n');
  if (loopRows.some(noisy)) {
    out.write(`! other work on the machine averaged more than ${NOISY_CORES} cores during that row's slices: every row shared it (slices interleave), but absolute numbers are low\n`);
  }
  const sseRows = rows.filter((r) => r.sse);
  const sseTable = sseRows.length ? markdownTable(SSE_HEADER, sseRows.map(sseCells)) : '';
  if (sseTable) out.write(`\nSSE events (per event = (hop CPU per streamed call − per plain call) ÷ progress events per call):\n${sseTable}\n`);
  const idleRows = rows.filter((r) => r.idle);
  const idleTable = idleRows.length ? markdownTable(IDLE_HEADER, idleRows.map(idleCells), 1) : '';
  if (idleTable) {
    out.write(`\nidle SSE streams (fresh processes per scenario; "MB at 10k" = the hop's whole RSS with 10,000 streams; when fewer could open, the measured RSS plus KiB/stream for each missing one):\n${idleTable}\n`);
    for (const r of idleRows) if (r.idle?.limitedBy) out.write(`* ${r.scenario}: ${r.idle.streams} of ${r.idle.requested} streams: limited by the ${r.idle.limitedBy}\n`);
  }
  out.write('\n');
  const verdicts = judge(rows);
  out.write('targets:\n');
  for (const v of verdicts) {
    const mark = v.role === 'judged' ? (v.pass ? 'PASS' : 'FAIL') : v.pass ? '(ref: meets)' : '(ref: misses)';
    out.write(`  ${mark.padEnd(13)} ${v.scenario.padEnd(18)} ${v.shown.padStart(10)}   ${v.description}\n`);
  }

  const results = {
    date: started.toISOString(),
    machine: { ...host, loadAverageAtEnd: os.loadavg().map((l) => Math.round(l * 100) / 100) },
    node: process.version,
    git,
    config: {
      warmupSeconds: opts.warmup,
      warmupCalls: opts.warmupCalls,
      seconds: opts.seconds,
      slice: opts.slice,
      slices,
      concurrency: opts.concurrency,
      sseEvents: opts.sseEvents,
      idleStreams: opts.idleStreams,
      scenarios: opts.scenarios.map(({ id, title, upstream, hop, baseline }) => ({ id, title, upstream, hop, baseline })),
      workloads: opts.workloads.map(({ id, title, kind }) => ({ id, title, kind })),
      hopNodeArgs: opts.hopNodeArgs,
    },
    targets: TARGETS.map(({ id, description, workload, judged, reference, compare, limit }) => ({ id, description, workload, judged, reference, compare, limit })),
    rows,
    verdicts,
    table,
    sseTable,
    idleTable,
  };
  writeFileSync(opts.out + '.tmp', JSON.stringify(results, null, 2) + '\n');
  renameSync(opts.out + '.tmp', opts.out);
  out.write(`\nwrote ${opts.out}\n`);
  const failed = verdicts.some((v) => v.role === 'judged' && !v.pass);
  return opts.check && failed ? 1 : 0;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping the processes the bench started…\n`);
    void stopAll().finally(() => process.exit(130));
  });
}

main().then(
  async (code) => {
    await stopAll();
    process.exit(code);
  },
  async (err: unknown) => {
    process.stderr.write(`\nbench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    await stopAll();
    process.exit(1);
  },
);

/** `calls` tools/call echo calls through `url`, 16 sessions at a time, then the sessions are ended. */
async function warmUp(url: string, calls: number): Promise<void> {
  const client = new McpHttpClient(url, 16);
  try {
    const sessions = await Promise.all(Array.from({ length: 16 }, () => client.open()));
    await echoCalls(sessions, calls);
    await Promise.all(sessions.map((s) => s.end()));
  } finally {
    await client.close();
  }
}
