/**
 * The layout of src/ as rules: no import cycles, and imports only point down the layers below.
 *
 * Layers, top to bottom (a file may import from its own folder and from any lower layer; never
 * from a higher one, nor from another folder of its own layer). Type-only imports count: they
 * are knowledge of the other module all the same.
 *
 *   cli.ts, demo/        entry points (demo/ is a standalone MCP server, importing nothing here)
 *   reload.ts            SIGHUP and --watch-config: loads the file again, hands it to the gateway
 *   gateway.ts           builds every part below and hands each its dependencies;
 *   config/load.ts       the config loader (YAML, env, schema) makes what cli.ts hands it
 *   http/                the front doors: Fastify routes, HTTP in → request, outcome → HTTP out
 *   translate/           translation between protocol eras, run by the doors
 *   pipeline/            the stages between a door and an upstream (limit, deadline, …)
 *   resilience/          what the stages are built of: limiter, retry budget, deadline timer, tool hints
 *   cache/, ops/         the result cache; metrics, audit log, health, logger
 *   auth/, events/,      who may call what; the event log and the hub that relays upstream
 *   curation/            streams to clients through it (it reads upstream bodies, and reopens them
 *                        through a callback handed in: upstream/ never sees the log); a server's
 *                        tools, prompts and resources as published (a wrapper of its upstream)
 *   upstream/            the transports to MCP servers, replicas, balancing, credentials
 *   session/             sealed session ids, the session stores, 2024-11-05 routes
 *   redis.ts             the Redis connection
 *   config/              the configuration's types and the parts of its loading
 *   protocol/            MCP and JSON-RPC: envelope, revisions, headers, SSE framing
 *   errors.ts, pipeline/admission.ts
 *                        leaves: the error table, and the tokens an upstream request carries
 *                        (minted by the pipeline's limit stage, named by upstream/types.ts)
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Entries are folders (ending in `/`) or files, relative to src/; the most specific one places a file. */
const LAYERS: readonly (readonly string[])[] = [
  ['cli.ts', 'demo/'],
  ['reload.ts'],
  ['gateway.ts', 'config/load.ts'],
  ['http/'],
  ['translate/'],
  ['pipeline/'],
  ['resilience/'],
  ['cache/', 'ops/'],
  ['auth/', 'events/', 'curation/'],
  ['upstream/'],
  ['session/'],
  ['redis.ts'],
  ['config/'],
  ['protocol/'],
  ['errors.ts', 'pipeline/admission.ts'],
];

/** Imports that break the layers on purpose, each with its reason. One no longer made fails the test: remove it. */
const EXCEPTIONS: readonly { from: string; to: string; why: string }[] = [
  { from: 'translate/to-session.ts', to: 'http/context.ts', why: 'translation runs inside the doors and is handed the whole GatewayContext' },
  { from: 'translate/to-stateless.ts', to: 'http/context.ts', why: 'translation runs inside the doors and is handed the whole GatewayContext' },
];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every relative module a file names in an import or export statement (static or dynamic), as paths relative to src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [
    ...text.matchAll(/^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm),
    ...text.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm),
    ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]!);
  return specifiers.filter((s) => s.startsWith('.')).map((s) => relative(SRC, normalize(join(dirname(file), s))));
}

const graph = new Map<string, string[]>(sources(SRC).map((f) => [relative(SRC, f), importsOf(f)]));

function placeOf(file: string): { entry: string; layer: number } | undefined {
  let best: { entry: string; layer: number } | undefined;
  LAYERS.forEach((entries, layer) => {
    for (const entry of entries) {
      const matches = entry.endsWith('/') ? file.startsWith(entry) : file === entry;
      if (matches && (!best || entry.length > best.entry.length)) best = { entry, layer };
    }
  });
  return best;
}

it('finds the imports it checks (the parser is not blind)', () => {
  assert.ok(graph.size > 50, `only ${graph.size} files under src/`);
  assert.ok(graph.get('gateway.ts')!.includes('http/app.ts'));
  assert.ok(graph.get('http/mcp.ts')!.includes('http/context.ts'), 'type-only imports are seen');
  for (const [file, deps] of graph) for (const d of deps) assert.ok(graph.has(d), `${file} imports ${d}, which is not a file under src/`);
});

it('has no import cycle, type-only imports included', () => {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]): void => {
    state.set(file, 'open');
    for (const dep of graph.get(file) ?? []) {
      if (state.get(dep) === 'open') cycles.push([...path.slice(path.indexOf(dep)), dep].join(' → '));
      else if (!state.has(dep)) visit(dep, [...path, dep]);
    }
    state.set(file, 'done');
  };
  for (const file of [...graph.keys()].sort()) if (!state.has(file)) visit(file, [file]);
  assert.deepEqual(cycles, []);
});

it('places every file of src/ in a layer', () => {
  const unplaced = [...graph.keys()].filter((f) => !placeOf(f));
  assert.deepEqual(unplaced, [], 'add the new folder or file to LAYERS in test/unit/layout.test.ts (and README "Source layout")');
});

it('imports only from the same folder or a lower layer', () => {
  const wrong: string[] = [];
  const used = new Set<string>();
  for (const [file, deps] of graph) {
    const from = placeOf(file)!;
    for (const dep of deps) {
      const to = placeOf(dep)!;
      if (from.entry === to.entry || to.layer > from.layer) continue;
      const exception = EXCEPTIONS.find((e) => e.from === file && e.to === dep);
      if (exception) used.add(`${exception.from} → ${exception.to}`);
      else wrong.push(`${file} (${from.entry}) → ${dep} (${to.entry})`);
    }
  }
  assert.deepEqual(wrong, []);
  assert.deepEqual(EXCEPTIONS.map((e) => `${e.from} → ${e.to}`).filter((e) => !used.has(e)), [], 'exceptions no longer needed');
});

it('keeps no state at module level: no WeakMap side tables, no Map or Set made empty to be filled (dependencies arrive through constructors)', () => {
  const singletons: string[] = [];
  for (const file of graph.keys()) {
    const text = readFileSync(join(SRC, file), 'utf8');
    for (const m of text.matchAll(/^(?:export\s+)?(?:const|let)\s+(\w+)[^=\n]*=\s*new\s+(WeakMap|WeakSet|WeakRef|Map|Set)\b(?:<[^\n]*?>)?\(\s*\)/gm)) {
      // A constant typed ReadonlyMap/ReadonlySet is an empty value, not a table to fill.
      if (/:\s*Readonly(Map|Set)</.test(m[0])) continue;
      singletons.push(`${file}: ${m[1]} (${m[2]})`);
    }
  }
  assert.deepEqual(singletons, []);
});
