/**
 * The cache stage: answers reads and lists from the result cache (src/cache/), lets concurrent
 * misses of the same read share one upstream fetch, captures the result of a miss as it passes
 * and stores it, and invalidates — after a `tools/call` that is not read-only (on every door),
 * and on the notifications an upstream sends on any stream it answers with (`list_changed`,
 * `resources/updated`), seen by a tap on that stream's body. It also learns the tool hints
 * (src/resilience/tool-hints.ts) from the tools/list answers it sees.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ResultCache, usable, type Invalidation, type Lookup } from '../cache/result-cache.ts';
import type { GatewayConfig, ServerCacheConfig, ServerConfig } from '../config/types.ts';
import { methodLabel, type Metrics } from '../ops/metrics.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { SseSplitter, sseMessage } from '../protocol/sse.ts';
import type { ToolHints } from '../resilience/tool-hints.ts';
import { captureResult } from '../upstream/capture.ts';
import type { UpstreamResponse } from '../upstream/types.ts';
import type { PipelineRequest } from './request.ts';

/** The longest a request waits for the same read already under way before it asks itself. */
const MAX_JOIN_WAIT_MS = 30_000;

/** A miss this request fetches: what its answer is stored under, and whom it tells. */
export interface Miss {
  readonly lookup: Lookup;
  readonly settle: ((shared: Parameters<ReturnType<ResultCache['lead']>>[0]) => void) | undefined;
}

export class CacheStage {
  readonly #config: GatewayConfig;
  readonly #metrics: Metrics;
  readonly #cache: ResultCache | undefined;
  readonly #hints: ToolHints;
  readonly #onStoreError: (err: unknown) => void;

  constructor(opts: { config: GatewayConfig; metrics: Metrics; cache: ResultCache | undefined; hints: ToolHints; onStoreError: (err: unknown) => void }) {
    this.#config = opts.config;
    this.#metrics = opts.metrics;
    this.#cache = opts.cache;
    this.#hints = opts.hints;
    this.#onStoreError = opts.onStoreError;
  }

  /**
   * The cached answer to a single request `m`, or the miss it fetches (undefined when it is not
   * for the cache: the server caches nothing, the method is no read, the client takes no JSON,
   * a name was masked; then at once, with no promise to wait for). A store that fails counts as a miss.
   */
  lookup(req: PipelineRequest, server: ServerConfig, m: Envelope): Promise<UpstreamResponse | Miss | undefined> | undefined {
    const cache = this.#cache;
    if (!cache || !server.cache || req.masked || !ResultCache.cacheable(m.method, m.params) || !acceptsJson(req)) return undefined;
    return this.#lookup(cache, req, server as ServerConfig & { readonly cache: ServerCacheConfig }, m);
  }

  async #lookup(cache: ResultCache, req: PipelineRequest, server: ServerConfig & { readonly cache: ServerCacheConfig }, m: Envelope): Promise<UpstreamResponse | Miss | undefined> {
    const context = req.principal || (req.session !== undefined ? `session ${req.session}` : `holder ${req.holder}`);
    const lookup = await cache
      .lookup({ server: server.name, method: m.method!, params: m.params, protocolVersion: req.protocolVersion, context, perUser: server.cache.perUser })
      .catch((err: unknown) => void this.#onStoreError(err));
    const joined = lookup && lookup.hit === undefined ? cache.joined(lookup) : undefined;
    const waitMs = Math.min(server.timeout.idleMs, MAX_JOIN_WAIT_MS);
    const result = lookup?.hit ?? (joined ? usable(await waitAtMost(joined, waitMs), lookup!) : undefined);
    this.#metrics.cacheLookup(methodLabel(m.method), result !== undefined);
    if (result !== undefined) return this.#fromCache(server, m, result);
    if (!lookup) return undefined;
    return { lookup, settle: joined ? undefined : cache.lead(lookup, waitMs) };
  }

  /** The fetch of a miss failed: whoever waits for it asks for itself. */
  abandon(miss: Miss | undefined): void {
    miss?.settle?.(undefined);
  }

  /** Reads the result out of the answer as it passes: stored for a miss, learnt from for tools/list. */
  capture(res: UpstreamResponse, server: ServerConfig, m: Envelope, miss: Miss | undefined): UpstreamResponse {
    const learn = m.method === 'tools/list' && (server.cache !== undefined || server.retry.attempts > 1);
    if (!miss && !learn) return res;
    return captureResult(res, m.id, this.#config.cache.maxEntryBytes, (result) => this.#captured(server, miss, learn, result));
  }

  /** Whether a call of `m` changes what the cache holds for the server (a tools/call not read-only). */
  invalidates(req: PipelineRequest, server: ServerConfig, m: Envelope): boolean {
    if (!this.#cache || !server.cache || req.masked || m.method !== 'tools/call') return false;
    const tool = m.params?.name;
    const name = typeof tool === 'string' ? tool : undefined;
    if (name !== undefined && Object.hasOwn(server.cache.invalidateOn, name)) return server.cache.invalidateOn[name]!;
    return !this.#hints.get(server.name, name).readOnly;
  }

  invalidate(server: string, what: Invalidation): void {
    this.#cache?.invalidate(server, what).catch(this.#onStoreError);
  }

  /**
   * Taps an SSE answer or stream of `server` for the notifications that invalidate its cache; the
   * bytes pass as they came. Any stream: a POST's answer, a GET stream, a 2024-11-05 session's.
   */
  watch(server: string, res: UpstreamResponse): UpstreamResponse {
    const body = res.body;
    if (!this.#cache || !this.#config.servers[server]?.cache || body === null || typeof body === 'string' || !res.headers['content-type']?.startsWith('text/event-stream')) return res;
    const tap = new NotificationTap((what) => this.invalidate(server, what));
    body.on('error', (err) => tap.destroy(err));
    tap.once('close', () => {
      if (!body.destroyed) body.destroy();
    });
    body.pipe(tap);
    return { ...res, body: tap };
  }

  #fromCache(server: ServerConfig, m: Envelope, result: string): UpstreamResponse {
    if (m.method === 'tools/list' && !this.#hints.knows(server.name)) this.#hints.learn(server.name, JSON.parse(result) as Record<string, unknown>);
    return { status: 200, headers: { 'content-type': 'application/json' }, body: `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":${result}}` };
  }

  #captured(server: ServerConfig, miss: Miss | undefined, learn: boolean, result: Record<string, unknown> | undefined): void {
    if (result && learn) this.#hints.learn(server.name, result);
    if (!miss || !this.#cache) return;
    if (!result) return miss.settle?.(undefined);
    const text = JSON.stringify(result);
    const scope = result.cacheScope === 'private' ? 'private' : 'public';
    const ttl = typeof result.ttlMs === 'number' && result.ttlMs >= 0 ? Math.min(result.ttlMs, server.cache!.ttlMs) : server.cache!.ttlMs;
    miss.settle?.({ result: text, scope, context: miss.lookup.context });
    if (ttl > 0) this.#cache.store(miss.lookup, text, scope, ttl).catch(this.#onStoreError);
  }
}

/** Reads the notifications out of an SSE stream that passes byte for byte. */
class NotificationTap extends Transform {
  readonly #events = new SseSplitter();
  readonly #invalidate: (what: Invalidation) => void;
  #blind = false;

  constructor(invalidate: (what: Invalidation) => void) {
    super();
    this.#invalidate = invalidate;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.#blind) {
      try {
        this.#events.push(chunk, (event) => {
          if (!event.includes('"notifications/')) return;
          const msg = sseMessage(event)?.msg as { method?: unknown; params?: { uri?: unknown } } | null | undefined;
          const what = msg && typeof msg === 'object' ? invalidationOf(msg.method, msg.params?.uri) : undefined;
          if (what) this.#invalidate(what);
        });
      } catch {
        // An event too large to read: nothing more is looked at (the hub refuses it anyway).
        this.#blind = true;
      }
    }
    callback(null, chunk);
  }
}

function invalidationOf(method: unknown, uri: unknown): Invalidation | undefined {
  switch (method) {
    case 'notifications/resources/updated':
      return typeof uri === 'string' ? { uri } : undefined;
    case 'notifications/resources/list_changed':
      return 'resources';
    case 'notifications/tools/list_changed':
      return 'tools';
    case 'notifications/prompts/list_changed':
      return 'prompts';
    default:
      return undefined;
  }
}

/** A cached answer is JSON: only for clients that take JSON. */
function acceptsJson(req: PipelineRequest): boolean {
  const accept = req.headers.accept;
  return accept === undefined || accept.includes('application/json') || accept.includes('*/*');
}

async function waitAtMost<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  const timer = new AbortController();
  try {
    return await Promise.race([p, sleep(ms, undefined, { signal: timer.signal, ref: false }).catch(() => undefined)]);
  } finally {
    timer.abort();
  }
}
