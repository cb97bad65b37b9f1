import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { Child } from '../test/helpers/process.ts';
import { startRedis, type RedisServer } from '../test/helpers/redis.ts';
import { own, spawnOwned, stopChild, waitForJson } from './processes.ts';

/**
 * A scenario is one path from the load generator to a tools/call answer: an upstream, and the hop
 * in front of it (none, the bare undici floor, the gateway). Each scenario starts its own fresh
 * processes and stops them when its workloads are done.
 */
export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly upstream: UpstreamKind;
  readonly hop: HopKind;
  /** The scenario this one is compared with (same upstream, no hop). */
  readonly baseline: string;
  /** Gateway scenarios: the bare undici hop in front of the same upstream (what any hop costs). */
  readonly floor?: string;
  /** Only these kinds of workload run against it (all when absent). */
  readonly kinds?: readonly WorkloadKind[];
  /** In a run that names no scenarios, only these kinds (fewer than `kinds`: keeps the default run short). */
  readonly kindsByDefault?: readonly WorkloadKind[];
}

/** `demo-json`: the demo server with `--json`, answering every POST with application/json instead of SSE. */
export type UpstreamKind = 'demo' | 'demo-json' | 'raw';
/** `gateway-redis-pair`: two gateway replicas sharing one Redis and one session secret. */
export type HopKind = 'none' | 'floor' | 'gateway' | 'gateway-redis' | 'gateway-cache' | 'gateway-redis-pair' | 'gateway-traces';
/** What a workload does (bench/workloads.ts), so a scenario can say which ones it serves. */
export type WorkloadKind = 'call' | 'read' | 'sse' | 'churn' | 'resume' | 'idle';

export const SCENARIOS: readonly Scenario[] = [
  { id: 'direct', title: 'demo upstream, direct', upstream: 'demo', hop: 'none', baseline: 'direct' },
  { id: 'floor', title: 'demo upstream via bare undici hop', upstream: 'demo', hop: 'floor', baseline: 'direct' },
  { id: 'gateway', title: 'demo upstream via gateway', upstream: 'demo', hop: 'gateway', baseline: 'direct', floor: 'floor' },
  { id: 'gateway-redis', title: 'demo upstream via gateway + Redis', upstream: 'demo', hop: 'gateway-redis', baseline: 'direct', floor: 'floor' },
  { id: 'gateway-cache', title: 'demo upstream via gateway, result cache on', upstream: 'demo', hop: 'gateway-cache', baseline: 'direct', floor: 'floor' },
  // Issue J: what traces cost when on (every call sampled, exported over OTLP/HTTP); the
  // `gateway` row is the same gateway with traces off.
  { id: 'gateway-traces', title: 'demo upstream via gateway, traces on', upstream: 'demo', hop: 'gateway-traces', baseline: 'direct', floor: 'floor', kinds: ['call', 'read'] },
  // Issue I measured with the SDK upstream answering in JSON. No SSE in its answers, so no sse or
  // resume workload; read adds nothing a call does not show. churn runs when these are named.
  { id: 'json-direct', title: 'demo upstream answering JSON, direct', upstream: 'demo-json', hop: 'none', baseline: 'json-direct', kinds: ['call', 'churn'], kindsByDefault: ['call'] },
  { id: 'json-floor', title: 'demo upstream answering JSON via bare undici hop', upstream: 'demo-json', hop: 'floor', baseline: 'json-direct', kinds: ['call', 'churn'], kindsByDefault: ['call'] },
  { id: 'json-gateway', title: 'demo upstream answering JSON via gateway', upstream: 'demo-json', hop: 'gateway', baseline: 'json-direct', floor: 'json-floor', kinds: ['call', 'churn'], kindsByDefault: ['call'] },
  { id: 'json-gateway-redis', title: 'demo upstream answering JSON via gateway + Redis', upstream: 'demo-json', hop: 'gateway-redis', baseline: 'json-direct', floor: 'json-floor', kinds: ['call', 'churn'], kindsByDefault: ['call'] },
  { id: 'raw-direct', title: 'raw upstream, direct', upstream: 'raw', hop: 'none', baseline: 'raw-direct' },
  { id: 'raw-floor', title: 'raw upstream via bare undici hop', upstream: 'raw', hop: 'floor', baseline: 'raw-direct' },
  { id: 'raw-gateway', title: 'raw upstream via gateway', upstream: 'raw', hop: 'gateway', baseline: 'raw-direct', floor: 'raw-floor' },
  { id: 'raw-gateway-redis', title: 'raw upstream via gateway + Redis', upstream: 'raw', hop: 'gateway-redis', baseline: 'raw-direct', floor: 'raw-floor' },
  // Issue B: resuming on another replica. The stream is produced on replica A, resumed on B.
  { id: 'gateway-redis-peer', title: 'demo upstream via gateway + Redis, resumed on a second replica', upstream: 'demo', hop: 'gateway-redis-pair', baseline: 'direct', kinds: ['resume'] },
];

export interface StartOptions {
  /** Extra node flags for the hop process, gateway or floor (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`). */
  readonly hopNodeArgs: readonly string[];
  /** Connections the hop may open to the upstream for requests (the gateway's `connections`); unlimited by default. */
  readonly upstreamConnections?: number;
}

export interface RunningScenario {
  /** The MCP endpoint the load generator calls. */
  readonly url: string;
  /** `gateway-redis-pair`: the second replica's endpoint (resumptions go there). */
  readonly peerUrl?: string;
  /** Processes whose CPU time is charged to each call, by role. */
  readonly pids: Readonly<Record<string, number>>;
  /** The hop's process (gateway or floor), for what reads its output (bench/gc.ts); absent without a hop. */
  readonly hop?: Child;
  stop(): Promise<void>;
}

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = join(HERE, '..');
const DEMO_SERVER = join(ROOT, 'src/demo/server.ts');
const RAW_UPSTREAM = join(HERE, 'raw-upstream.ts');
const FLOOR = join(HERE, 'floor.ts');
const GATEWAY_CLI = join(ROOT, 'dist/cli.js');
const SESSION_SECRET = 'bench-session-secret-0123456789abcdefghij';

interface Proc {
  readonly url: string;
  readonly pid: number;
  /** Helper processes whose CPU is charged to the scenario too (redis-server). */
  readonly helpers?: Readonly<Record<string, number>>;
  readonly child?: Child;
  stop(): Promise<void>;
}

export async function startScenario(s: Scenario, opts: StartOptions): Promise<RunningScenario> {
  const stack: Proc[] = [];
  const stop = async () => {
    for (const p of stack.reverse()) await p.stop();
  };
  try {
    const upstream = await startUpstream(s.upstream);
    stack.push(upstream);
    if (s.hop === 'none') return { url: upstream.url, pids: { upstream: upstream.pid }, stop };
    if (s.hop === 'gateway-redis-pair') {
      // Replica A produces the streams; B (the row's "hop") serves the resumptions from Redis.
      const redis = await startOwnedRedis();
      stack.push({ url: redis.url, pid: redis.child.pid, stop: () => stopChild(redis.child) });
      const a = await startGateway('gateway-redis', upstream.url, opts, redis.url);
      stack.push(a);
      const b = await startGateway('gateway-redis', upstream.url, opts, redis.url);
      stack.push(b);
      return { url: a.url, peerUrl: b.url, pids: { hop: b.pid, origin: a.pid, upstream: upstream.pid, redis: redis.child.pid }, stop };
    }
    const hop = await startHop(s.hop, upstream.url, opts);
    stack.push(hop);
    return { url: hop.url, pids: { hop: hop.pid, upstream: upstream.pid, ...hop.helpers }, hop: hop.child, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startUpstream(kind: UpstreamKind): Promise<Proc> {
  const args = kind === 'raw' ? [RAW_UPSTREAM, '--http', '0'] : [DEMO_SERVER, '--http', '0', ...(kind === 'demo-json' ? ['--json'] : [])];
  const child = spawnOwned(process.execPath, args, { env: { ...process.env, DEMO_REPLICA: 'bench' } });
  const port = await waitForJson(child, (v) => (typeof v.listening === 'number' ? v.listening : undefined));
  return { url: `http://127.0.0.1:${port}/mcp`, pid: child.pid, stop: () => stopChild(child) };
}

async function startOwnedRedis(): Promise<RedisServer> {
  const redis = await startRedis();
  own(redis.child);
  return redis;
}

async function startHop(kind: Exclude<HopKind, 'none' | 'gateway-redis-pair'>, upstreamUrl: string, opts: StartOptions): Promise<Proc> {
  if (kind === 'floor') {
    const connections = String(opts.upstreamConnections ?? 0);
    const child = spawnOwned(process.execPath, [...opts.hopNodeArgs, FLOOR, '--upstream', upstreamUrl, '--port', '0', '--connections', connections]);
    const port = await waitForJson(child, (v) => (typeof v.listening === 'number' ? v.listening : undefined));
    return { url: `http://127.0.0.1:${port}/mcp`, pid: child.pid, child, stop: () => stopChild(child) };
  }
  if (kind !== 'gateway-redis') return startGateway(kind, upstreamUrl, opts);
  const redis = await startOwnedRedis();
  try {
    const gateway = await startGateway(kind, upstreamUrl, opts, redis.url);
    return {
      ...gateway,
      helpers: { redis: redis.child.pid },
      stop: async () => {
        await gateway.stop();
        await stopChild(redis.child);
      },
    };
  } catch (err) {
    await stopChild(redis.child);
    throw err;
  }
}

/** One gateway process; `redisUrl` sets `redis.url` (the event log, sessions and cache go there). */
async function startGateway(kind: 'gateway' | 'gateway-redis' | 'gateway-cache' | 'gateway-traces', upstreamUrl: string, opts: StartOptions, redisUrl?: string): Promise<Proc> {
  const upstream = { url: upstreamUrl, ...(opts.upstreamConnections ? { connections: opts.upstreamConnections } : {}) };
  const sink = kind === 'gateway-traces' ? await startOtlpSink() : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-bench-'));
  const configFile = join(dir, 'gateway.yaml');
  writeFileSync(
    configFile,
    stringify({
      listen: { host: '127.0.0.1', port: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
      session: { secret: SESSION_SECRET },
      // info: the "gateway listening" line carries the URL; nothing is logged per request.
      log: { level: 'info' },
      ...(redisUrl ? { redis: { url: redisUrl } } : {}),
      servers: { bench: { upstreams: [upstream], ...(kind === 'gateway-cache' ? { cache: { ttl: '1m' } } : {}) } },
      ...(sink ? { telemetry: { endpoint: sink.url, sampler: 'always_on' } } : {}),
    }),
  );
  // Only PATH: MCPGW_* variables from the caller's shell must not change what is measured.
  const child = spawnOwned(process.execPath, [...opts.hopNodeArgs, GATEWAY_CLI, '--config', configFile], { env: { PATH: process.env.PATH } });
  const stop = async () => {
    await stopChild(child, 10_000);
    await sink?.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const url = await waitForJson(child, (v) => (v.msg === 'gateway listening' && typeof v.url === 'string' ? v.url : undefined));
    return { url: `${url}/mcp/bench`, pid: child.pid, child, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A collector that takes OTLP/HTTP exports and drops them (in the load generator's process: its CPU is not the hop's). */
async function startOtlpSink(): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
