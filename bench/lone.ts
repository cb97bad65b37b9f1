/**
 * What a lone call waits for: one session calls `tools/call echo` back to back (concurrency 1)
 * through each scenario named, round after round with the scenarios in turn, and each round
 * prints the p50/p90 latency, the added p50 against the first scenario (the direct one), and the
 * hop's CPU per call. With `--profile`, one more round per hop runs under V8's CPU profiler (over
 * the hop's inspector, sampling every 25 µs, only while the lone calls run) and prints the hop's
 * busy time per call by owner (as bench/profile.ts names them) and its top functions by self time.
 * With `--phases`, each hop row also gives the median time of each step of a call inside the hop
 * (bench/phases.ts: body read, upstream request sent, its answer's head and end, the client's
 * answer written), in µs since the hop took the request's head.
 *
 *   node bench/lone.ts [--scenarios json-direct,json-floor,json-gateway] [--calls 4000] [--rounds 3] [--profile] [--phases]
 *
 * Every scenario is warmed up first with `--warmup-calls` calls from 16 sessions (the gateway's
 * code reaches its optimized state after ≈ 15,000 calls; docs/performance.md).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { processCpuMicros } from './cpu.ts';
import { echoCalls } from './hop.ts';
import { freePort, Inspector } from './inspector.ts';
import { McpHttpClient, type McpSession } from './mcp-client.ts';
import { breakdown } from './profile.ts';
import { SCENARIOS, startScenario, type RunningScenario, type Scenario } from './scenarios.ts';
import { ECHO_PARAMS, ECHO_RESULT } from './workloads.ts';

const { values } = parseArgs({
  options: {
    scenarios: { type: 'string', default: 'json-direct,json-floor,json-gateway' },
    calls: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '3' },
    'warmup-calls': { type: 'string', default: '15000' },
    profile: { type: 'boolean', default: false },
    top: { type: 'string', default: '25' },
    phases: { type: 'boolean', default: false },
  },
});
const calls = Number(values.calls);

interface CpuProfile {
  readonly nodes: readonly { readonly id: number; readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }; readonly children?: readonly number[] }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

interface Running {
  readonly scenario: Scenario;
  readonly running: RunningScenario;
  readonly client: McpHttpClient;
  readonly lone: McpSession;
  readonly inspectorPort?: number;
}

async function main(): Promise<void> {
  const scenarios = values.scenarios.split(',').map((id) => {
    const s = SCENARIOS.find((x) => x.id === id);
    if (!s || s.hop === 'gateway-redis-pair') throw new Error(`unknown or two-hop scenario "${id}"`);
    return s;
  });
  const all: Running[] = [];
  const phasesDir = values.phases ? mkdtempSync(join(tmpdir(), 'bench-phases-')) : undefined;
  try {
    for (const scenario of scenarios) {
      const inspectorPort = values.profile && scenario.hop !== 'none' ? await freePort() : undefined;
      const running = await startScenario(scenario, { hopNodeArgs: [...(inspectorPort ? [`--inspect=127.0.0.1:${inspectorPort}`] : []), ...(phasesDir ? ['--import', `${pathToFileURL(join(import.meta.dirname, 'phases.ts')).href}?dir=${encodeURIComponent(phasesDir)}`] : [])] });
      const client = new McpHttpClient(running.url, 16);
      all.push({ scenario, running, client, lone: await client.open(), inspectorPort });
      const sessions = await Promise.all(Array.from({ length: 16 }, () => client.open()));
      await echoCalls(sessions, Number(values['warmup-calls']));
      await Promise.all(sessions.map((s) => s.end()));
    }
    const base = all[0]!;
    for (let round = 1; round <= Number(values.rounds); round++) {
      const p50s = new Map<Running, number>();
      for (const r of round % 2 ? all : [...all].reverse()) {
        const pid = r.running.pids.hop;
        const cpu0 = pid === undefined ? 0 : processCpuMicros(pid);
        if (phasesDir && pid) process.kill(pid, 'SIGUSR2');
        const lat = await loneCalls(r.lone, calls);
        const cpu = pid === undefined ? undefined : (processCpuMicros(pid) - cpu0) / calls;
        const phases = phasesDir && pid ? await readPhases(phasesDir, pid) : undefined;
        p50s.set(r, lat.p50);
        console.log(JSON.stringify({ round, scenario: r.scenario.id, p50Ms: ms(lat.p50), p90Ms: ms(lat.p90), hopCpuMicrosPerCall: cpu === undefined ? undefined : Math.round(cpu), phases }));
      }
      console.log(JSON.stringify({ round, addedP50Ms: Object.fromEntries(all.slice(1).map((r) => [r.scenario.id, ms(p50s.get(r)! - p50s.get(base)!)])) }));
    }
    if (values.profile) for (const r of all) if (r.inspectorPort) await profile(r);
  } finally {
    for (const r of all) {
      await r.lone.end().catch(() => {});
      await r.client.close();
      await r.running.stop();
    }
    if (phasesDir) rmSync(phasesDir, { recursive: true, force: true });
  }
}

/** The hop's phase medians since the last ask (bench/phases.ts writes them on SIGUSR2), as "µs since the head: mark". */
async function readPhases(dir: string, pid: number): Promise<Record<string, number>> {
  const file = join(dir, `phases-${pid}.json`);
  rmSync(file, { force: true });
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 100 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 20));
  const medians = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { p50: number }>;
  return Object.fromEntries(Object.entries(medians).sort((a, b) => a[1].p50 - b[1].p50).map(([name, m]) => [name, m.p50]));
}

/** `n` calls one after another; their latencies' p50 and p90 in ms. */
async function loneCalls(session: McpSession, n: number): Promise<{ p50: number; p90: number }> {
  const lat = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await session.request('tools/call', ECHO_PARAMS);
    lat[i] = performance.now() - t0;
    if (res.status !== 200 || !res.body.includes(ECHO_RESULT)) throw new Error(`tools/call answered HTTP ${res.status}: ${res.body.slice(0, 200)}`);
  }
  lat.sort();
  return { p50: lat[Math.floor(n * 0.5)]!, p90: lat[Math.floor(n * 0.9)]! };
}

async function profile(r: Running): Promise<void> {
  const inspector = await Inspector.connect(r.inspectorPort!);
  await inspector.send('Profiler.enable');
  await inspector.send('Profiler.setSamplingInterval', { interval: 25 });
  await inspector.send('Profiler.start');
  await loneCalls(r.lone, calls);
  const { profile: p } = (await inspector.send('Profiler.stop')) as { profile: CpuProfile };
  inspector.close();
  const { busyMicros, owners } = breakdown(p);
  console.log(`\n${r.scenario.id}: busy ${Math.round(busyMicros / calls)} µs per lone call (profiled)\n\n| owner | µs per call |\n|---|---:|`);
  for (const [o, us] of [...owners].sort((a, b) => b[1] - a[1])) if (us / busyMicros >= 0.01) console.log(`| ${o} | ${(us / calls).toFixed(1)} |`);
  const self = new Map<string, number>();
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  p.samples.forEach((id, i) => {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)' || functionName === '(root)') return;
    const name = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|dist|src|bench)\//, '$1/')}${url ? `:${lineNumber + 1}` : ''}`;
    self.set(name, (self.get(name) ?? 0) + (p.timeDeltas[i] ?? 0));
  });
  console.log('\n| function (self) | µs per call |\n|---|---:|');
  for (const [f, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`| \`${f}\` | ${(us / calls).toFixed(1)} |`);
}

function ms(v: number): number {
  return Math.round(v * 1000) / 1000;
}

await main();
