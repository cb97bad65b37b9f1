import { performance } from 'node:perf_hooks';
import { processCpuMicros, processRssBytes } from './cpu.ts';
import { enter, sleep } from './loop.ts';
import { McpHttpClient } from './mcp-client.ts';
import { fdLimit, openFds, raiseFdLimit } from './processes.ts';
import { emptyRow, type IdleStats } from './report.ts';
import { endpointOf, openIdleStream, type IdleStream } from './sse-client.ts';
import type { OnceWorkload } from './workloads.ts';

/** The stream count the 500 MB target is stated for. */
export const IDLE_TARGET_STREAMS = 10_000;
/** Sessions opened at a time, and GET streams being opened at a time (below every listen backlog). */
const SESSION_CONCURRENCY = 32;
const STREAM_CONCURRENCY = 256;
/** File descriptors left free in every process for everything else (pools, logs, Redis, the runtime). */
const FD_MARGIN = 128;
const OPEN_TIMEOUT_MS = 10_000;
/** Wait after opening, before the idle phase is measured: late writes and allocations settle. */
const SETTLE_MS = 2_000;

/**
 * Idle SSE streams: `requested` sessions, each with its standalone GET stream open and idle. The
 * upstream is the raw one (it answers a GET with a stream that stays open and says nothing). Each
 * scenario gets fresh processes, with the upstream connection pool and open-files limits raised to
 * fit (every stream holds a client connection and, behind a hop, an upstream connection). It
 * measures each process's RSS fresh, with the sessions, and with the streams, and the hop's CPU
 * while the streams sit idle (keep-alive comments).
 */
export function idleStreams(requested: number): OnceWorkload {
  return {
    mode: 'once',
    id: 'idle',
    title: `${requested.toLocaleString('en-US')} idle standalone GET streams, one per session`,
    kind: 'idle',
    byDefault: true,
    appliesTo: (s) => s.upstream === 'raw',
    async run({ scenario, start, progress, holdMs }) {
      const hasHop = scenario.hop !== 'none';
      // Each stream: one fd here; behind a hop, two there (client side, upstream side) and one upstream.
      raiseFdLimit(process.pid, requested + FD_MARGIN);
      const running = await start({});
      try {
        const pids = running.pids;
        for (const [role, pid] of Object.entries(pids)) if (role !== 'redis') raiseFdLimit(pid, (role === 'hop' ? 2 : 1) * requested + FD_MARGIN);
        const room = (pid: number, perStream: number) => Math.floor((fdLimit(pid) - openFds(pid) - FD_MARGIN) / perStream);
        const rooms: Record<string, number> = { client: room(process.pid, 1), upstream: room(pids.upstream!, 1) };
        if (hasHop) rooms.hop = room(pids.hop!, 2);
        let streams = requested;
        let limitedBy: string | undefined;
        for (const [role, n] of Object.entries(rooms)) {
          if (n < streams) {
            streams = Math.max(0, n);
            limitedBy = `open-files limit of the ${role} process (${fdLimit(role === 'client' ? process.pid : pids[role]!)})`;
          }
        }
        const roles = Object.entries(pids).filter(([role]) => role !== 'redis');
        const rss = () => Object.fromEntries(roles.map(([role, pid]) => [role, processRssBytes(pid)]));
        const fresh = rss();

        enter(progress, 'setup', 0);
        const client = new McpHttpClient(running.url, SESSION_CONCURRENCY);
        const sessions: string[] = [];
        let failed = 0;
        let firstError: string | undefined;
        const failure = (err: unknown) => {
          failed++;
          progress.errors++;
          firstError ??= (err as Error).message;
        };
        try {
          await inParallel(streams, SESSION_CONCURRENCY, async () => {
            try {
              sessions.push((await client.open()).id);
              progress.ops++;
            } catch (err) {
              failure(err);
            }
          });
        } finally {
          await client.close();
        }
        await sleep(SETTLE_MS / 2);
        const withSessions = rss();

        enter(progress, 'measure', 0);
        const to = endpointOf(running.url);
        const open: IdleStream[] = [];
        const t0 = performance.now();
        await inParallel(sessions.length, STREAM_CONCURRENCY, async (i) => {
          // Nothing opens at all (a hop that never answers a GET): no point waiting out every timeout.
          if (open.length === 0 && failed >= STREAM_CONCURRENCY) return failure(new Error('skipped: the first streams all failed'));
          try {
            open.push(await openIdleStream(to, sessions[i]!, OPEN_TIMEOUT_MS));
            progress.ops++;
          } catch (err) {
            failure(err);
          }
        });
        const openSeconds = (performance.now() - t0) / 1000;
        try {
          await sleep(SETTLE_MS);
          const cpu0 = hasHop ? processCpuMicros(pids.hop!) : 0;
          const h0 = performance.now();
          await sleep(holdMs);
          const hopIdleCores = hasHop ? (processCpuMicros(pids.hop!) - cpu0) / ((performance.now() - h0) * 1000) : undefined;
          const withStreams = rss();
          const idle = idleStats({ requested, streams: open.length, failed, limitedBy, openSeconds, fresh, withSessions, withStreams, hopIdleCores });
          return { ...emptyRow(scenario.id, 'idle'), requests: open.length, errors: failed, idle, ...(firstError ? { firstError } : {}) };
        } finally {
          for (const s of open) s.close();
        }
      } finally {
        enter(progress, 'teardown', 0);
        await running.stop();
      }
    },
  };
}

function idleStats(m: {
  requested: number;
  streams: number;
  failed: number;
  limitedBy: string | undefined;
  openSeconds: number;
  fresh: Record<string, number>;
  withSessions: Record<string, number>;
  withStreams: Record<string, number>;
  hopIdleCores: number | undefined;
}): IdleStats {
  const mib = (b: number) => Math.round((b / 2 ** 20) * 10) / 10;
  const rssMiB: Record<string, { fresh: number; sessions: number; streams: number }> = {};
  const bytesPerStream: Record<string, number> = {};
  for (const role of Object.keys(m.fresh)) {
    rssMiB[role] = { fresh: mib(m.fresh[role]!), sessions: mib(m.withSessions[role]!), streams: mib(m.withStreams[role]!) };
    if (m.streams > 0) bytesPerStream[role] = Math.round((m.withStreams[role]! - m.withSessions[role]!) / m.streams);
  }
  // The whole hop with 10,000 streams: as measured, plus the per-stream growth for any streams the
  // open-files limits left out (their sessions' share is not added: a session costs the hop no
  // memory of its own beyond what traffic already grew the heap to).
  const hop = m.withStreams.hop;
  const perStream = bytesPerStream.hop;
  const hopMBAt10k = hop !== undefined && perStream !== undefined ? (hop + perStream * (IDLE_TARGET_STREAMS - m.streams)) / 1e6 : undefined;
  return {
    requested: m.requested,
    streams: m.streams,
    failed: m.failed,
    ...(m.limitedBy ? { limitedBy: m.limitedBy } : {}),
    openSeconds: Math.round(m.openSeconds * 100) / 100,
    rssMiB,
    bytesPerStream,
    ...(hopMBAt10k !== undefined ? { hopMBAt10k: Math.round(hopMBAt10k * 10) / 10 } : {}),
    extrapolated: m.streams !== IDLE_TARGET_STREAMS,
    ...(m.hopIdleCores !== undefined ? { hopIdleCores: Math.round(m.hopIdleCores * 1000) / 1000 } : {}),
  };
}

/** Runs `task(0 … n-1)`, at most `width` at a time. */
async function inParallel(n: number, width: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
}
