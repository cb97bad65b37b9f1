/**
 * What a hop's garbage collector does per call: one scenario's hop (gateway or floor) runs with
 * `--trace-gc` while 16 sessions (`--concurrency`) call `tools/call echo` back to back, round
 * after round (`--rounds` of `--calls`, after one round of warm-up), and each round prints the
 * hop's CPU per call and, from the hop's GC trace, the bytes allocated and promoted to the old
 * generation per call, the scavenges and full GCs, and the GC pause per call. With `--workload
 * churn` an op is a whole session instead (initialize, initialized, the call, DELETE; 16 at a
 * time) and `--calls` counts sessions: what a session's start and end cost.
 *
 *   node bench/gc.ts [--scenario json-gateway] [--workload calls|churn] [--calls 15000] [--rounds 3] [--hop-node-args "…"]
 *
 * Promoted bytes per call tell whether a call's objects die young, as they should: a few dozen
 * bytes when they do, kilobytes when something keeps them past a scavenge (docs/performance.md,
 * "Objects that outlived their call"). Like bytes allocated (bench/alloc.ts) it is a count, steady
 * on a busy machine; CPU per call needs a quiet one and several rounds.
 */
import { parseArgs } from 'node:util';
import { processCpuMicros } from './cpu.ts';
import { hopDriver, hopWorkload, singleHopScenario } from './hop.ts';
import { startScenario } from './scenarios.ts';

const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'json-gateway' },
    workload: { type: 'string', default: 'calls' },
    calls: { type: 'string', default: '15000' },
    rounds: { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '16' },
    'hop-node-args': { type: 'string', default: '' },
  },
});
const scenario = singleHopScenario(values.scenario);
const workload = hopWorkload(values.workload);
const calls = Number(values.calls);
const concurrency = Number(values.concurrency);

/** One line of `--trace-gc`: which collector, and the heap before and after it (MB), and its pause (ms). */
const GC_LINE = /(Scavenge|Minor Mark-Sweep|Mark-Compact|Mark-Sweep)[^\d]*?([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ [\d.]+ ms/;

interface GcEvent {
  readonly kind: string;
  readonly before: number;
  readonly after: number;
  readonly pauseMs: number;
}

async function main(): Promise<void> {
  const extra = values['hop-node-args'].split(' ').filter(Boolean);
  const running = await startScenario(scenario, { hopNodeArgs: ['--trace-gc', ...extra] });
  try {
    const events: GcEvent[] = [];
    running.hop!.lines.on('line', (line) => {
      const m = GC_LINE.exec(line);
      if (m) events.push({ kind: m[1]!, before: Number(m[2]), after: Number(m[4]), pauseMs: Number(m[6]) });
    });
    const driver = await hopDriver(workload, running.url, concurrency);
    await driver.run(calls);
    // Keys name the op: …PerCall, or …PerSession with --workload churn.
    const Op = driver.unit === 'call' ? 'Call' : 'Session';
    for (let round = 1; round <= Number(values.rounds); round++) {
      events.length = 0;
      const cpu0 = processCpuMicros(running.pids.hop!);
      const t0 = performance.now();
      await driver.run(calls);
      const seconds = (performance.now() - t0) / 1000;
      const cpu = processCpuMicros(running.pids.hop!) - cpu0;
      const perOp = Object.entries({ ...gcPerCall(events), hopCpuMicrosPerCall: round1(cpu / calls) }).map(([k, v]) => [k.replace(/PerCall$/, `Per${Op}`), v]);
      console.log(JSON.stringify({ scenario: scenario.id, round, [`${driver.unit}sPerSec`]: Math.round(calls / seconds), ...Object.fromEntries(perOp) }));
    }
    await driver.close();
  } finally {
    await running.stop();
  }
}

/** Allocated: what each collection found beyond what the last one left; promoted: what a scavenge left beyond the last one's. */
function gcPerCall(events: readonly GcEvent[]) {
  let allocated = 0;
  let promoted = 0;
  let pauseMs = 0;
  let scavenges = 0;
  let full = 0;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    pauseMs += e.pauseMs;
    if (e.kind === 'Scavenge' || e.kind === 'Minor Mark-Sweep') scavenges++;
    else full++;
    if (i === 0) continue;
    const last = events[i - 1]!;
    allocated += Math.max(0, e.before - last.after);
    if (e.kind === 'Scavenge' || e.kind === 'Minor Mark-Sweep') promoted += Math.max(0, e.after - last.after);
  }
  return {
    allocatedBytesPerCall: Math.round((allocated * MiB) / calls),
    promotedBytesPerCall: Math.round((promoted * MiB) / calls),
    scavenges,
    fullGcs: full,
    gcPauseMicrosPerCall: round1((pauseMs * 1000) / calls),
  };
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

await main();
