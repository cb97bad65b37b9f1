import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { captureResult } from '../cache/capture.ts';
import { ResultCache, usable, type Invalidation, type Lookup } from '../cache/result-cache.ts';
import type { GatewayConfig, ServerConfig } from '../config/types.ts';
import { GatewayError, type JsonRpcId } from '../errors.ts';
import { drain } from '../upstream/body.ts';
import type { StreamHub, StreamObserver } from '../events/hub.ts';
import { methodLabel, type Metrics } from '../ops/metrics.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import type { SessionClaims } from '../session/token.ts';
import { GATEWAY_ORIGINATED } from '../pipeline/admission.ts';
import { ownRequest, type ClientRequest, type Upstream, type UpstreamResponse } from '../upstream/types.ts';
import { Deadline } from './deadline.ts';
import { backoffMs, isTransient, RETRY_STATUSES, RetryBudget } from './retry.ts';
import { ToolHints } from './tool-hints.ts';

export interface ResilienceEventMap {
  retry: [{ server: string; replica: string; attempt: number; reason: string }];
  timeout: [{ server: string; session: string; id: JsonRpcId; reason: 'idle' | 'max' }];
  /** The cache or the rate-limit store failed; the request went on without it. */
  storeError: [{ what: 'cache' | 'rateLimit'; error: string }];
}

/** Methods that only read: safe to send again. tools/call is safe when its annotations say so. */
const SAFE_METHODS = new Set(['ping', 'tools/list', 'prompts/list', 'prompts/get', 'resources/list', 'resources/templates/list', 'resources/read', 'completion/complete']);
/** Sessions whose server this replica remembers (for notifications on their streams). */
const MAX_SESSIONS = 100_000;
/** The longest a request waits for the same read already under way before it asks itself. */
const MAX_JOIN_WAIT_MS = 30_000;

/** One request in flight: its time limit and what its end must do. */
interface Pending {
  readonly server: ServerConfig;
  readonly upstream: Upstream;
  readonly claims: SessionClaims;
  readonly req: ClientRequest;
  readonly id: JsonRpcId;
  readonly byRequest: string;
  readonly byProgress: string | undefined;
  readonly controller: AbortController;
  readonly deadline: Deadline;
  readonly invalidates: boolean;
  /** The gateway stream relaying the answer, once it is relayed. */
  streamKey: string | undefined;
  /** A JSON answer still arriving: its time limit holds until it is whole. */
  jsonBody: Readable | undefined;
  timedOut: GatewayError | undefined;
  done: boolean;
}

/**
 * What stands between the session-era front door and an upstream for every single JSON-RPC
 * request of a session, after the pipeline's limit stage (src/pipeline/limit.ts): the result cache (hits answer without the upstream; concurrent misses
 * share one fetch), the all-breakers-open fast failure, retries of safe calls, and the request's
 * time limit with cancellation upstream. It watches the hub's streams for the notifications
 * that invalidate the cache and the progress that extends a time limit. Batches, notifications
 * and responses pass through untouched (a client's notifications/cancelled also closes the
 * cancelled request's stream).
 */
export class Resilience extends EventEmitter<ResilienceEventMap> implements StreamObserver {
  readonly #config: GatewayConfig;
  readonly #metrics: Metrics;
  readonly #hub: StreamHub;
  readonly #cache: ResultCache | undefined;
  readonly hints = new ToolHints();
  readonly #budgets = new Map<string, RetryBudget>();
  readonly #sessions = new Map<string, string>();
  readonly #byStream = new Map<string, Pending>();
  readonly #byRequest = new Map<string, Pending>();
  readonly #byProgress = new Map<string, Pending>();

  constructor(opts: { config: GatewayConfig; metrics: Metrics; hub: StreamHub; cache: ResultCache | undefined }) {
    super();
    this.#config = opts.config;
    this.#metrics = opts.metrics;
    this.#hub = opts.hub;
    this.#cache = opts.cache;
    opts.hub.observer = this;
  }

  /** Requests in flight with a time limit (tests, diagnostics). */
  get pending(): number {
    return this.#byRequest.size;
  }

  /** Notes which server a session belongs to, so notifications on its streams can be placed. */
  remember(claims: SessionClaims): void {
    if (this.#sessions.get(claims.id) === claims.server) return;
    if (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
    this.#sessions.set(claims.id, claims.server);
  }

  /**
   * Sends one POST of a session to the upstream, with everything above. `masked`: the guard
   * swapped a name the caller may not use for one that cannot exist — such a request is not
   * answered from the cache, and a tool call of it runs nothing, so it invalidates nothing.
   */
  async post(upstream: Upstream, claims: SessionClaims, req: ClientRequest, masked = false): Promise<UpstreamResponse> {
    const m = req.messages.length === 1 ? req.messages[0]! : undefined;
    if (m?.kind !== 'request') {
      if (m?.method === 'notifications/cancelled') this.#cancelledByClient(claims.id, m.params?.requestId);
      return upstream.post(claims, req);
    }
    const server = this.#config.servers[claims.server]!;
    this.remember(claims);

    let lookup: Lookup | undefined;
    let settle: ReturnType<ResultCache['lead']> | undefined;
    const cache = server.cache && !masked && ResultCache.cacheable(m.method, m.params) && acceptsJson(req) ? this.#cache : undefined;
    if (cache) {
      const context = claims.principal || `session ${claims.id}`;
      lookup = await cache
        .lookup({ server: server.name, method: m.method!, params: m.params, protocolVersion: req.protocolVersion, context, perUser: server.cache!.perUser })
        .catch((err: unknown) => void this.#storeError('cache', err));
      const joined = lookup && lookup.hit === undefined ? cache.joined(lookup) : undefined;
      const result = lookup?.hit ?? (joined ? usable(await waitAtMost(joined, joinWaitMs(server)), lookup!) : undefined);
      // (A store that failed counts as a miss: the request goes upstream.)
      this.#metrics.cacheLookup(methodLabel(m.method), result !== undefined);
      if (result !== undefined) return this.#fromCache(server, m, result);
      if (lookup && !joined) settle = cache.lead(lookup, joinWaitMs(server));
    }
    // Every replica's breaker open: fail fast, naming the server (a stdio server's children are
    // per session and need no spare replica, so this is for HTTP pools).
    if (upstream.kind === 'http' && upstream.health() !== 'up') {
      settle?.(undefined);
      throw new GatewayError('MCPGW_ERR_NO_HEALTHY_UPSTREAM', `server "${server.name}": the circuit breaker of every replica is open`);
    }

    const call = this.#start(server, upstream, claims, req, m, !masked && this.#invalidates(server, m));
    let res: UpstreamResponse;
    try {
      res = await this.#send(call, m);
    } catch (err) {
      settle?.(undefined);
      this.#finish(call);
      throw err;
    }
    const learn = m.method === 'tools/list' && (server.cache !== undefined || server.retry.attempts > 1);
    if (lookup || learn) res = captureResult(res, m.id, this.#config.cache.maxEntryBytes, (result) => this.#captured(server, lookup, settle, learn, result));
    return this.#answered(call, res);
  }

  // -- StreamObserver: every upstream message the hub relays -----------------------------------

  message(key: string, data: string): void {
    const call = this.#byStream.get(key);
    if (call) {
      call.deadline.touch();
      // A message without a method on a single request's stream is its answer: the request is done.
      if (!data.includes('"method"')) this.#finish(call);
    }
    if (this.#byProgress.size === 0 && !this.#cache) return;
    if (!data.includes('"notifications/')) return;
    let msg: { method?: unknown; params?: { progressToken?: unknown; uri?: unknown } };
    try {
      msg = JSON.parse(data) as typeof msg;
    } catch {
      return;
    }
    const session = key.slice(0, key.indexOf(':'));
    if (msg.method === 'notifications/progress') {
      this.#byProgress.get(`${session} ${JSON.stringify(msg.params?.progressToken)}`)?.deadline.touch();
      return;
    }
    const server = this.#sessions.get(session);
    if (server === undefined || !this.#config.servers[server]?.cache) return;
    const what = invalidationOf(msg.method, msg.params?.uri);
    if (what) this.#invalidate(server, what);
  }

  end(key: string): void {
    const call = this.#byStream.get(key);
    if (call) this.#finish(call);
  }

  // -- the call ---------------------------------------------------------------------------------

  #start(server: ServerConfig, upstream: Upstream, claims: SessionClaims, req: ClientRequest, m: Envelope, invalidates: boolean): Pending {
    const token = (m.params?._meta as { progressToken?: unknown } | undefined)?.progressToken;
    const call: Pending = {
      server,
      upstream,
      claims,
      req,
      id: m.id,
      byRequest: `${claims.id} ${JSON.stringify(m.id)}`,
      byProgress: token === undefined ? undefined : `${claims.id} ${JSON.stringify(token)}`,
      controller: new AbortController(),
      deadline: new Deadline(server.timeout.idleMs, server.timeout.maxMs, (reason) => this.#expire(call, reason)),
      invalidates,
      streamKey: undefined,
      jsonBody: undefined,
      timedOut: undefined,
      done: false,
    };
    this.#byRequest.set(call.byRequest, call);
    if (call.byProgress) this.#byProgress.set(call.byProgress, call);
    return call;
  }

  /** Sends, and sends again while the failure is transient, the call safe and the budget not spent. */
  async #send(call: Pending, m: Envelope): Promise<UpstreamResponse> {
    const { server, claims } = call;
    const retry = server.retry;
    const budget = retry.attempts > 1 && this.#safe(server, m) ? this.#budget(server, claims.upstream) : undefined;
    budget?.deposit();
    const req: ClientRequest = { ...call.req, signal: call.controller.signal };
    for (let attempt = 1; ; attempt++) {
      let res: UpstreamResponse | undefined;
      let failure: unknown;
      try {
        res = await raced(call.upstream.post(claims, req), call.controller.signal);
      } catch (err) {
        if (call.timedOut) throw call.timedOut;
        failure = err;
      }
      const transient = failure !== undefined ? isTransient(failure) : RETRY_STATUSES.has(res!.status);
      if (!transient || !budget || attempt >= retry.attempts || !budget.withdraw()) {
        if (failure !== undefined) throw failure;
        return res!;
      }
      dropAnswer(res);
      this.emit('retry', { server: server.name, replica: claims.upstream, attempt, reason: res ? `HTTP ${res.status}` : ((failure as GatewayError).detail ?? 'connection failed') });
      try {
        await sleep(backoffMs(attempt, retry.backoffMs, retry.maxBackoffMs), undefined, { signal: call.controller.signal });
      } catch {
        throw call.timedOut ?? new GatewayError('MCPGW_ERR_INTERNAL', 'retry aborted');
      }
    }
  }

  /** A JSON answer ends the call now; an SSE answer when its stream ends (or its answer passes). */
  #answered(call: Pending, res: UpstreamResponse): UpstreamResponse {
    const body = res.body;
    if (body === null || typeof body === 'string') {
      this.#finish(call);
      return res;
    }
    if (!res.headers['content-type']?.startsWith('text/event-stream')) {
      // The headers came, the body may drip: the call is over when the body is (see #expire).
      call.jsonBody = body;
      body.once('close', () => this.#finish(call));
      return res;
    }
    // Not relayed after all (the front door answered otherwise): the body's end is the call's.
    body.once('close', () => {
      if (call.streamKey === undefined) this.#finish(call);
    });
    return {
      ...res,
      onStream: (key) => {
        if (call.done) return;
        call.streamKey = key;
        this.#byStream.set(key, call);
        if (call.timedOut) this.#hub.interrupt(key, call.timedOut, call.id);
      },
    };
  }

  #expire(call: Pending, reason: 'idle' | 'max'): void {
    if (call.done) return;
    const { server, claims, id } = call;
    const limit = reason === 'idle' ? `no progress for ${server.timeout.idleMs} ms` : `over the ${server.timeout.maxMs} ms maximum`;
    call.timedOut = new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `server "${server.name}": ${limit}`);
    this.emit('timeout', { server: server.name, session: claims.id, id, reason });
    this.#cancelUpstream(call, reason);
    // Relayed: the error is the stream's last event (the stream's end finishes the call). Still
    // waiting for the upstream: the abort makes #send throw the error as the answer.
    if (call.streamKey !== undefined) this.#hub.interrupt(call.streamKey, call.timedOut, id);
    call.controller.abort(call.timedOut);
    // A JSON answer that stopped arriving: whoever reads it gets the time limit's error.
    call.jsonBody?.destroy(call.timedOut);
  }

  /** Tells the upstream to stop working on a request nobody waits for any more. */
  #cancelUpstream(call: Pending, reason: string): void {
    const params = { requestId: call.id, reason: `gateway timeout (${reason})` };
    const message = { jsonrpc: '2.0', method: 'notifications/cancelled', params };
    // The gateway's own message: the request it cancels was admitted when it came.
    const req = ownRequest(call.req.headers, message, call.req.protocolVersion, GATEWAY_ORIGINATED);
    call.upstream.post(call.claims, req).then(dropAnswer, () => {});
  }

  /**
   * The client gave up on a request: its stream is closed (the upstream sends no answer to a
   * cancelled request, so it would stay open for good). A request still waiting for its answer
   * keeps its time limit, which then frees what it holds.
   */
  #cancelledByClient(session: string, requestId: unknown): void {
    const call = this.#byRequest.get(`${session} ${JSON.stringify(requestId)}`);
    if (!call || call.streamKey === undefined) return;
    const key = call.streamKey;
    this.#finish(call);
    this.#hub.interrupt(key);
  }

  #finish(call: Pending): void {
    if (call.done) return;
    call.done = true;
    call.deadline.clear();
    if (this.#byRequest.get(call.byRequest) === call) this.#byRequest.delete(call.byRequest);
    if (call.byProgress && this.#byProgress.get(call.byProgress) === call) this.#byProgress.delete(call.byProgress);
    if (call.streamKey !== undefined) this.#byStream.delete(call.streamKey);
    // After the call, not before: a read racing it then caches under a stamp no one looks for.
    if (call.invalidates) this.#invalidate(call.server.name, 'all');
  }

  // -- cache ------------------------------------------------------------------------------------

  #fromCache(server: ServerConfig, m: Envelope, result: string): UpstreamResponse {
    if (m.method === 'tools/list' && !this.hints.knows(server.name)) this.hints.learn(server.name, JSON.parse(result) as Record<string, unknown>);
    return { status: 200, headers: { 'content-type': 'application/json' }, body: `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":${result}}` };
  }

  #captured(server: ServerConfig, lookup: Lookup | undefined, settle: ((s: Parameters<ReturnType<ResultCache['lead']>>[0]) => void) | undefined, learn: boolean, result: Record<string, unknown> | undefined): void {
    if (result && learn) this.hints.learn(server.name, result);
    if (!lookup || !this.#cache) return;
    if (!result) return settle?.(undefined);
    const text = JSON.stringify(result);
    const scope = result.cacheScope === 'private' ? 'private' : 'public';
    const ttl = typeof result.ttlMs === 'number' && result.ttlMs >= 0 ? Math.min(result.ttlMs, server.cache!.ttlMs) : server.cache!.ttlMs;
    settle?.({ result: text, scope, context: lookup.context });
    if (ttl > 0) this.#cache.store(lookup, text, scope, ttl).catch((err: unknown) => this.#storeError('cache', err));
  }

  #invalidate(server: string, what: Invalidation): void {
    this.#cache?.invalidate(server, what).catch((err: unknown) => this.#storeError('cache', err));
  }

  #invalidates(server: ServerConfig, m: Envelope): boolean {
    if (!server.cache || m.method !== 'tools/call') return false;
    const tool = toolName(m);
    if (tool !== undefined && Object.hasOwn(server.cache.invalidateOn, tool)) return server.cache.invalidateOn[tool]!;
    return !this.hints.get(server.name, tool).readOnly;
  }

  // -- retries and limits -----------------------------------------------------------------------

  #safe(server: ServerConfig, m: Envelope): boolean {
    if (SAFE_METHODS.has(m.method!)) return true;
    if (m.method !== 'tools/call') return false;
    const hint = this.hints.get(server.name, toolName(m));
    return hint.readOnly || hint.idempotent;
  }

  #budget(server: ServerConfig, replica: string): RetryBudget {
    const key = `${server.name} ${replica}`;
    let budget = this.#budgets.get(key);
    if (!budget) this.#budgets.set(key, (budget = new RetryBudget(server.retry.budget, server.retry.minPerSecond)));
    return budget;
  }

  #storeError(what: 'cache' | 'rateLimit', err: unknown): undefined {
    this.emit('storeError', { what, error: (err as Error)?.message ?? String(err) });
    return undefined;
  }
}

/** How long a request waits for the same read already under way before it asks itself. */
function joinWaitMs(server: ServerConfig): number {
  return Math.min(server.timeout.idleMs, MAX_JOIN_WAIT_MS);
}

function toolName(m: Envelope): string | undefined {
  const name = m.method === 'tools/call' ? m.params?.name : undefined;
  return typeof name === 'string' ? name : undefined;
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
function acceptsJson(req: ClientRequest): boolean {
  const accept = req.headers.accept;
  return accept === undefined || accept.includes('application/json') || accept.includes('*/*');
}

/** Drops an answer nobody will read, keeping its connection reusable. */
function dropAnswer(res: UpstreamResponse | undefined): void {
  const body = res?.body;
  if (body && typeof body !== 'string') drain(body);
}

/** `p`, or the abort reason once `signal` aborts (an answer that still comes is dropped). */
function raced(p: Promise<UpstreamResponse>, signal: AbortSignal): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (res) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) dropAnswer(res);
        else resolve(res);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err as Error);
      },
    );
  });
}

async function waitAtMost<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  const timer = new AbortController();
  try {
    return await Promise.race([p, sleep(ms, undefined, { signal: timer.signal, ref: false }).catch(() => undefined)]);
  } finally {
    timer.abort();
  }
}
