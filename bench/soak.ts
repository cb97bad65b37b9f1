/**
 * Session churn soak: does the gateway's memory stay flat over many sessions? Starts one
 * scenario (default `raw-gateway`), runs `--sessions` whole sessions (initialize →
 * notifications/initialized → tools/call → DELETE, `--concurrency` at a time) and prints the
 * hop's resident memory every `--every` sessions, then the growth over the second half (after
 * warm-up: pools, JIT and caches have settled by then). Prints a table; `--check` exits 1 when
 * the second half grew by more than `--max-growth-mib`.
 *
 *   node bench/soak.ts [--scenario raw-gateway] [--sessions 100000] [--concurrency 16] [--every 10000]
 *
 * Resident memory also grows with a heap that has room (V8 grows it lazily): a leak is told by
 * heap snapshots (each one a full GC first), `--hop-node-args="--heapsnapshot-signal=SIGUSR2
 * --diagnostic-dir=<dir>" --snapshot-every 25000`, compared by constructor in DevTools.
 */
import { parseArgs } from 'node:util';
import { processRssBytes } from './cpu.ts';
import { McpHttpClient } from './mcp-client.ts';
import { stopAll } from './processes.ts';
import { SCENARIOS, startScenario } from './scenarios.ts';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'raw-gateway' },
    sessions: { type: 'string', default: '100000' },
    concurrency: { type: 'string', default: '16' },
    every: { type: 'string', default: '10000' },
    'max-growth-mib': { type: 'string', default: '20' },
    check: { type: 'boolean', default: false },
    // e.g. --hop-node-args="--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=/tmp/snap" with --snapshot-every.
    'hop-node-args': { type: 'string', default: '' },
    /** Sends the hop SIGUSR2 (a heap snapshot, with the flags above) at every this many sessions. */
    'snapshot-every': { type: 'string', default: '0' },
  },
});
const total = Number(values.sessions);
const concurrency = Number(values.concurrency);
const every = Number(values.every);
const scenario = SCENARIOS.find((s) => s.id === values.scenario);
if (!scenario || scenario.hop === 'none' || scenario.hop === 'floor') throw new Error(`--scenario must be a gateway scenario, got ${values.scenario}`);

const ECHO = '{"name":"echo","arguments":{"text":"soak"}}';
const MiB = 1024 * 1024;

const running = await startScenario(scenario, { hopNodeArgs: values['hop-node-args'].split(' ').filter(Boolean) });
const snapshotEvery = Number(values['snapshot-every']);
const hop = running.pids.hop!;
const client = new McpHttpClient(running.url, concurrency);
const rows: { sessions: number; rssMiB: number; perSecond: number }[] = [];
let done = 0;
let errors = 0;
let mark = performance.now();
let started = 0;
try {
  rows.push({ sessions: 0, rssMiB: processRssBytes(hop) / MiB, perSecond: 0 });
  const worker = async () => {
    while (started < total) {
      started++;
      try {
        const session = await client.open();
        const res = await session.request('tools/call', ECHO);
        const status = await session.delete();
        if (res.status !== 200 || status < 200 || status > 299) errors++;
      } catch {
        errors++;
      }
      if (snapshotEvery > 0 && (done + 1) % snapshotEvery === 0) process.kill(hop, 'SIGUSR2');
      if (++done % every === 0) {
        const now = performance.now();
        rows.push({ sessions: done, rssMiB: processRssBytes(hop) / MiB, perSecond: (every * 1000) / (now - mark) });
        mark = now;
        process.stderr.write(`\r${done} sessions`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
} finally {
  await client.close();
  await running.stop();
  await stopAll();
}

process.stderr.write('\n');
console.log(`soak · ${scenario.id} · ${total} sessions, ${concurrency} at a time · errors ${errors}`);
console.log('| sessions | hop RSS MiB | sessions/s |');
console.log('|---:|---:|---:|');
for (const r of rows) console.log(`| ${r.sessions.toLocaleString('en')} | ${r.rssMiB.toFixed(1)} | ${r.perSecond ? Math.round(r.perSecond).toLocaleString('en') : '—'} |`);
const half = rows[Math.floor(rows.length / 2)]!;
const last = rows.at(-1)!;
const growth = last.rssMiB - half.rssMiB;
console.log(`second half (${half.sessions.toLocaleString('en')} → ${last.sessions.toLocaleString('en')} sessions): ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB`);
if (values.check && (growth > Number(values['max-growth-mib']) || errors > 0)) process.exit(1);
