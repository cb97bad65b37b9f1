/**
 * The one way from a front door to an upstream. A door builds a `PipelineRequest` and says how
 * its upstream is reached (`Exchange`); `run` passes the request through the chain, in order:
 *
 *   limit → cache → breaker → deadline → retry → exchange → taps on the answer's body
 *
 * limit.ts (rate limits) with concurrency.ts (a caller's calls of a tool running at once: slots
 * taken before anything is awaited, given back when the answer is over — or, kept by the
 * exchange for a call that outlives its answer, when that call ends), cache.ts (hit, join, capture and store, invalidation), breaker.ts
 * (every replica's breaker open: fail fast), deadline.ts (idle and max time limit, cancellation
 * upstream), retry.ts (safe calls, with a budget); the taps follow the answer's body (activity
 * for the time limit, the result for the cache, notifications that invalidate it). Only `run`
 * mints the `Admitted` token an upstream request for a caller's messages must carry, and only
 * the door's `send` sees it: a door cannot reach an upstream for a caller around the chain.
 */
import { EventEmitter } from 'node:events';
import type { GatewayConfig, ServerConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import type { ResultCache } from '../cache/result-cache.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { RateLimiter } from '../resilience/limiter.ts';
import { ToolHints } from '../resilience/tool-hints.ts';
import { clientRequest, type UpstreamResponse } from '../upstream/types.ts';
import type { Admitted } from './admission.ts';
import { failFast } from './breaker.ts';
import { CacheStage, type Miss } from './cache.ts';
import { Deadlines, type Interrupt, type TimedCall, type TimeoutEvent } from './deadline.ts';
import { Concurrency, type Slots } from './concurrency.ts';
import { Limit } from './limit.ts';
import type { Exchange, PipelineRequest } from './request.ts';
import { Retry, type RetryEvent } from './retry.ts';

export interface PipelineEventMap {
  retry: [RetryEvent];
  timeout: [TimeoutEvent];
  /** The cache or the rate-limit store failed; the request went on without it. */
  storeError: [{ what: 'cache' | 'rateLimit'; error: string }];
}

const ADMITTED = Object.freeze({}) as Admitted;

export class Pipeline extends EventEmitter<PipelineEventMap> {
  readonly #config: GatewayConfig;
  readonly #limit: Limit;
  readonly #concurrency: Concurrency;
  readonly #cache: CacheStage;
  readonly #deadlines: Deadlines;
  readonly #retry: Retry;
  /** What tools/list said of each tool: which calls are read-only (cache) or safe to repeat (retry). */
  readonly hints = new ToolHints();

  constructor(opts: { config: GatewayConfig; metrics: Metrics; limiter: RateLimiter; prefix: string; cache: ResultCache | undefined; interrupt: Interrupt }) {
    super();
    this.#config = opts.config;
    this.#limit = new Limit({ config: opts.config, metrics: opts.metrics, limiter: opts.limiter, prefix: opts.prefix });
    this.#concurrency = new Concurrency({ config: opts.config, metrics: opts.metrics });
    const onStoreError = (err: unknown) => void this.emit('storeError', { what: 'cache', error: (err as Error)?.message ?? String(err) });
    this.#cache = new CacheStage({ config: opts.config, metrics: opts.metrics, cache: opts.cache, hints: this.hints, onStoreError });
    this.#deadlines = new Deadlines({ config: opts.config, interrupt: opts.interrupt, onTimeout: (e) => void this.emit('timeout', e) });
    this.#retry = new Retry({ hints: this.hints, onRetry: (e) => void this.emit('retry', e) });
  }

  /** Requests under a time limit now (tests, diagnostics). */
  get pending(): number {
    return this.#deadlines.pending;
  }

  /** Calls of capped tools running now (tests, diagnostics). */
  get running(): number {
    return this.#concurrency.running;
  }

  /** Runs the request through the chain to the door's upstream; see the file's comment. */
  async run(req: PipelineRequest, ex: Exchange): Promise<UpstreamResponse> {
    // A reload removed the server while this request was on its way: it is unknown now.
    if (!Object.hasOwn(this.#config.servers, req.server)) throw new GatewayError('MCPGW_ERR_UNKNOWN_SERVER', req.server);
    // Synchronous: the slots are held before anything is awaited.
    const slots = this.#concurrency.take(req);
    if (!slots) return this.#run(req, ex, undefined);
    try {
      return await this.#run(req, ex, slots);
    } catch (err) {
      slots.settle();
      throw err;
    }
  }

  /** The chain; the request's concurrency `slots` are given back once its answer is over (unless the exchange kept them). */
  async #run(req: PipelineRequest, ex: Exchange, slots: Slots | undefined): Promise<UpstreamResponse> {
    const limited = this.#limit.admit(req);
    if (limited) await limited;
    const server = this.#config.servers[req.server]!;
    const m = !req.batch && req.messages.length === 1 && req.messages[0]!.kind === 'request' ? req.messages[0]! : undefined;
    if (!m) return this.#passOn(req, server, ex, slots);

    const looked = this.#cache.lookup(req, server, m);
    const cached = looked && (await looked);
    if (cached && 'status' in cached) {
      if (slots) this.#afterAnswer(cached, undefined, () => slots.settle());
      return cached;
    }
    const miss: Miss | undefined = cached;
    try {
      failFast(server.name, ex.upstream);
    } catch (err) {
      this.#cache.abandon(miss);
      throw err;
    }
    const timed = this.#deadlines.start(req, ex.cancel?.bind(ex));
    const invalidates = this.#cache.invalidates(req, server, m);
    let res: UpstreamResponse;
    try {
      const sent = this.#retry.send(req, server, m, ex, clientRequest(req.headers, req.messages, false, req.protocolVersion, ADMITTED, timed?.expiry), slots);
      res = timed ? await timed.response(sent) : await sent;
    } catch (err) {
      // A send that threw before it had a promise to give never reached the time limit's watch.
      timed?.finish();
      this.#cache.abandon(miss);
      if (invalidates) this.#cache.invalidate(server.name, 'all');
      throw err;
    }
    res = this.#cache.capture(res, server, m, miss);
    // After the call, not before: a read racing it then caches under a stamp no one looks for.
    if (invalidates) this.#afterAnswer(res, timed, () => this.#cache.invalidate(server.name, 'all'));
    if (slots) this.#afterAnswer(res, timed, () => slots.settle());
    return this.#cache.watch(server.name, res);
  }

  /**
   * Taps a stream the gateway reads for itself (a 2024-11-05 session's standalone stream) for
   * the notifications that invalidate `server`'s cache.
   */
  watch(server: string, res: UpstreamResponse): UpstreamResponse {
    return this.#cache.watch(server, res);
  }

  /**
   * A batch, notifications, responses, or no message (GET, DELETE): no cache, no retry; a
   * batch's requests share one time limit, and its tool calls invalidate like single ones.
   */
  async #passOn(req: PipelineRequest, server: ServerConfig, ex: Exchange, slots: Slots | undefined): Promise<UpstreamResponse> {
    let invalidates = false;
    let requests = false;
    for (const n of req.messages) {
      if (req.session !== undefined && n.method === 'notifications/cancelled') this.#deadlines.cancelledByClient(req.session, n.params?.requestId);
      if (n.kind !== 'request') continue;
      requests = true;
      invalidates ||= this.#cache.invalidates(req, server, n);
    }
    if (requests) failFast(server.name, ex.upstream);
    const timed = this.#deadlines.start(req, ex.cancel?.bind(ex));
    let res: UpstreamResponse;
    try {
      const sent = ex.send(clientRequest(req.headers, req.messages, req.batch, req.protocolVersion, ADMITTED, timed?.expiry), slots);
      res = timed ? await timed.response(sent) : await sent;
    } catch (err) {
      timed?.finish();
      if (invalidates) this.#cache.invalidate(server.name, 'all');
      throw err;
    }
    if (invalidates) this.#afterAnswer(res, timed, () => this.#cache.invalidate(server.name, 'all'));
    if (slots) this.#afterAnswer(res, timed, () => slots.settle());
    return this.#cache.watch(server.name, res);
  }

  /** Runs `fn` once the answer is over: the timed call's end, or its body's. */
  #afterAnswer(res: UpstreamResponse, timed: TimedCall | undefined, fn: () => void): void {
    if (timed) return timed.whenDone(fn);
    const body = res.body;
    if (body === null || typeof body === 'string') return fn();
    body.once('close', fn);
  }
}
