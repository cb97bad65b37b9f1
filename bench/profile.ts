/**
 * What a hop's CPU time per call is made of: reads a `.cpuprofile` written by
 * `npm run bench -- --hop-node-args="--cpu-prof --cpu-prof-dir=<dir>"` and prints its busy time
 * by owner — the gateway's own folders (src/<folder>), each dependency, Node's core (HTTP
 * parser, streams, timers without a caller of ours), socket writes and GC. A sample belongs to
 * the nearest frame of ours or of a dependency above it (Node's stream code run for the
 * pipeline counts as the pipeline's); start-up (module loading, building the app) is left out.
 *
 *   node bench/profile.ts <file.cpuprofile> [--us-per-op <the row's hop CPU µs/op>]
 *
 * With `--us-per-op`, each owner's share is also given in µs per call.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Native leaves that are an owner of their own. */
const NATIVE: Readonly<Record<string, string>> = {
  '(garbage collector)': 'GC',
  '(program)': 'VM (program)',
  writev: 'socket writes (syscall)',
  writeUtf8String: 'socket writes (syscall)',
  writeBuffer: 'socket writes (syscall)',
  writeLatin1String: 'socket writes (syscall)',
};

/** Frames below which everything is start-up, not the calls measured. */
const STARTUP = [/node:internal\/modules\//, /\/dist\/cli\.js$/, /\/avvio\//];

export function breakdown(profile: Profile): { busyMicros: number; owners: Map<string, number> } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const time = new Map<number, number>();
  profile.samples.forEach((id, i) => time.set(id, (time.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

  const owners = new Map<string, number>();
  let busyMicros = 0;
  for (const [id, micros] of time) {
    const leaf = byId.get(id)!.callFrame.functionName;
    if (leaf === '(idle)' || leaf === '(root)') continue;
    let owner = NATIVE[leaf];
    let startup = false;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const url = byId.get(cur)!.callFrame.url;
      if (STARTUP.some((re) => re.test(url))) startup = true;
      owner ??= ownerOf(url);
    }
    if (startup) continue;
    owner ??= 'node core (HTTP parser, sockets, timers)';
    busyMicros += micros;
    owners.set(owner, (owners.get(owner) ?? 0) + micros);
  }
  return { busyMicros, owners };
}

export function ownerOf(url: string): string | undefined {
  const dep = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (dep) return dep[1];
  const ours = /\/(?:dist|src)\/([^/]+)\/[^/]+\.[jt]s$/.exec(url) ?? /\/(?:dist|src)\/([^/]+)\.[jt]s$/.exec(url);
  if (ours) return `gateway: ${ours[1]}`;
  const bench = /\/bench\/([^/]+)\.[jt]s$/.exec(url);
  return bench ? `bench: ${bench[1]}` : undefined;
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { 'us-per-op': { type: 'string' } } });
  const file = positionals[0];
  if (!file) {
    console.error('usage: node bench/profile.ts <file.cpuprofile> [--us-per-op N]');
    process.exit(2);
  }
  const { busyMicros, owners } = breakdown(JSON.parse(readFileSync(file, 'utf8')) as Profile);
  const perOp = values['us-per-op'] === undefined ? undefined : Number(values['us-per-op']);
  console.log(`| owner | share of busy time |${perOp === undefined ? '' : ' µs per call |'}`);
  console.log(`|---|---:|${perOp === undefined ? '' : '---:|'}`);
  for (const [owner, micros] of [...owners].sort((a, b) => b[1] - a[1])) {
    const share = micros / busyMicros;
    if (share < 0.005) continue;
    console.log(`| ${owner} | ${(100 * share).toFixed(1)}% |${perOp === undefined ? '' : ` ${Math.round(share * perOp)} |`}`);
  }
}

if (import.meta.main) main();
