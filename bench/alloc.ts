/**
 * What a hop allocates per call, and where: one scenario's hop (gateway or floor) is driven with
 * `tools/call echo` by 16 sessions (`--concurrency`), and V8's sampling heap profiler (over the
 * hop's inspector, garbage included) counts every byte the hop allocates during `--calls` calls
 * after as many calls of warm-up. Bytes per call is a count, not a time: unlike CPU per call it
 * barely moves with the machine's other load, so a change's effect on allocation (and so on GC
 * and much of the per-call work) shows in one run on a busy machine, where CPU needs a quiet one.
 * With `--workload churn` an op is a whole session (initialize, initialized, the call, DELETE)
 * and `--calls` counts sessions.
 *
 *   node bench/alloc.ts [--scenario raw-gateway] [--workload calls|churn] [--calls 20000] [--concurrency 16] [--top 40] [--promoted]
 *
 * With `--promoted`, only what a scavenge did not collect is counted — what V8 promoted to the old
 * generation or allocated there at once (and the little still alive at the end): where the
 * promoted bytes per call of bench/gc.ts come from (docs/performance.md, "relayed SSE answers,
 * literals V8 allocates old").
 *
 * Prints bytes per call in all, by owner (as bench/profile.ts names them: the gateway's src/
 * folders, each dependency, Node's core) and by function (the function allocating; inlined
 * callees count as their caller's).
 */
import { parseArgs } from 'node:util';
import { freePort, Inspector } from './inspector.ts';
import { ownerOf } from './profile.ts';
import { hopDriver, hopWorkload, singleHopScenario } from './hop.ts';
import { startScenario } from './scenarios.ts';

/** One sample per this many bytes allocated on average (V8's default is 32 KiB: too coarse for a call). */
const SAMPLING_INTERVAL = 256;

interface HeapNode {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly selfSize: number;
  readonly children: readonly HeapNode[];
}

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'raw-gateway' },
    workload: { type: 'string', default: 'calls' },
    calls: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '16' },
    top: { type: 'string', default: '40' },
    promoted: { type: 'boolean', default: false },
  },
});
const scenario = singleHopScenario(values.scenario);
const workload = hopWorkload(values.workload);
const calls = Number(values.calls);
const concurrency = Number(values.concurrency);

async function main(): Promise<void> {
  const port = await freePort();
  const running = await startScenario(scenario, { hopNodeArgs: [`--inspect=127.0.0.1:${port}`] });
  try {
    const driver = await hopDriver(workload, running.url, concurrency);
    await driver.run(calls);
    const inspector = await Inspector.connect(port);
    await inspector.send('HeapProfiler.enable');
    await inspector.send('HeapProfiler.startSampling', { samplingInterval: SAMPLING_INTERVAL, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !values.promoted });
    await driver.run(calls);
    const { profile } = (await inspector.send('HeapProfiler.stopSampling')) as { profile: { head: HeapNode } };
    inspector.close();
    await driver.close();
    report(profile.head, driver.unit);
  } finally {
    await running.stop();
  }
}

function report(head: HeapNode, unit: 'call' | 'session'): void {
  const byFunction = new Map<string, number>();
  const byOwner = new Map<string, number>();
  let total = 0;
  // A node's bytes belong to its function; its owner is the nearest frame of ours or of a dependency above it.
  const walk = (node: HeapNode, owner: string | undefined) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const own = ownerOf(url) ?? owner;
    if (node.selfSize > 0) {
      const name = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|dist|src|bench)\//, '$1/') || '(native)'}${url ? `:${lineNumber + 1}` : ''}`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + node.selfSize);
      const o = own ?? 'node core (HTTP, streams, timers) and native';
      byOwner.set(o, (byOwner.get(o) ?? 0) + node.selfSize);
      total += node.selfSize;
    }
    for (const c of node.children) walk(c, own);
  };
  walk(head, undefined);
  const perCall = (bytes: number) => Math.round(bytes / calls).toLocaleString('en-US');
  const ops = unit === 'call' ? `${calls.toLocaleString('en-US')} calls, ${concurrency} sessions` : `${calls.toLocaleString('en-US')} sessions, ${concurrency} at a time`;
  console.log(`${scenario.id}: ${perCall(total)} bytes ${values.promoted ? 'promoted or allocated old' : 'allocated'} per ${unit} (${ops})\n`);
  console.log(`| owner | bytes per ${unit} |\n|---|---:|`);
  for (const [o, b] of [...byOwner].sort((x, y) => y[1] - x[1])) if (b / total >= 0.005) console.log(`| ${o} | ${perCall(b)} |`);
  console.log(`\n| function | bytes per ${unit} |\n|---|---:|`);
  for (const [f, b] of [...byFunction].sort((x, y) => y[1] - x[1]).slice(0, Number(values.top))) console.log(`| \`${f}\` | ${perCall(b)} |`);
}

await main();
