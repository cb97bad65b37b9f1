/**
 * The deadline stage: a request's time limit on every door — the server's `timeout.idle` without
 * activity and `timeout.max` in all. Activity is a real event of an SSE answer (progress, other
 * messages; a comment, a keep-alive line or a priming event is not one); a JSON answer has none
 * (one whose bytes drip is held to the idle limit too). A `tools/call` of a tool with its own
 * `timeout` (`servers.<name>.tools.<tool>.timeout`) has that one. A batch's requests share one
 * limit: the shortest idle and the shortest max of its requests'. On expiry the caller gets
 * MCPGW_ERR_UPSTREAM_TIMEOUT as the JSON-RPC answer to each request still unanswered, and the
 * upstream is told to stop: the request's `signal` aborts (closing a 2026-07-28 request is its
 * cancellation) and the door's `cancel` runs (notifications/cancelled).
 *
 * An SSE answer's events are read once: a door that relays it through the event hub (the session
 * and 2026-07-28 doors, `relayed`) has the hub's producer tell them here as it reads them
 * (`UpstreamResponse.events`), streams it reopens after an early close included; the other doors'
 * SSE answers pass a tap (`Activity`) that reads them on the way. A JSON answer is not read here.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { GatewayConfig } from '../config/types.ts';
import { errorBody, errorsBody, GatewayError, type JsonRpcId } from '../errors.ts';
import { idKey } from '../protocol/jsonrpc.ts';
import { parseAnswer } from '../protocol/answers.ts';
import { SseSplitter, sseFields } from '../protocol/sse.ts';
import { Deadline } from '../resilience/deadline.ts';
import type { EventTap, Expiry, UpstreamResponse } from '../upstream/types.ts';
import type { Door, PipelineRequest } from './request.ts';
import { toolLimits } from './tools.ts';

export interface TimeoutEvent {
  readonly server: string;
  readonly door: Door;
  readonly id: JsonRpcId;
  readonly reason: 'idle' | 'max';
}

/**
 * Ends a gateway stream that relays an answer (src/events/hub.ts `interrupt`), with `error` as
 * the answer to each of `ids`, or, without one, as cancelled. False when the stream is not produced here.
 */
export type Interrupt = (streamKey: string, error?: GatewayError, ids?: readonly JsonRpcId[]) => boolean;

export class Deadlines {
  readonly #config: GatewayConfig;
  readonly #interrupt: Interrupt;
  readonly #onTimeout: (e: TimeoutEvent) => void;
  /** Calls of a session by request id, for the client's notifications/cancelled. */
  readonly #bySession = new Map<string, TimedCall>();
  #live = 0;

  constructor(opts: { config: GatewayConfig; interrupt: Interrupt; onTimeout: (e: TimeoutEvent) => void }) {
    this.#config = opts.config;
    this.#interrupt = opts.interrupt;
    this.#onTimeout = opts.onTimeout;
  }

  /** Requests under a time limit now (tests, diagnostics). */
  get pending(): number {
    return this.#live;
  }

  /**
   * Starts the time limit of a request with JSON-RPC requests in it; undefined for anything else
   * (notifications and responses are not waited for; 2026-07-28 `subscriptions/listen` is a
   * stream that lasts, not a call awaiting its answer; `initialize` may start a process, and is
   * bounded by the transport's own limits: the spawn, `requestTimeout`).
   */
  start(req: PipelineRequest, cancel?: (id: JsonRpcId, reason: string) => void): TimedCall | undefined {
    const server = this.#config.servers[req.server]!;
    let ids: JsonRpcId[] | undefined;
    let idleMs = Infinity;
    let maxMs = Infinity;
    for (const m of req.messages) {
      if (m.kind !== 'request' || m.method === 'subscriptions/listen' || m.method === 'initialize') continue;
      (ids ??= []).push(m.id);
      const limit = toolLimits(server, m)?.timeout ?? server.timeout;
      idleMs = Math.min(idleMs, limit.idleMs);
      maxMs = Math.min(maxMs, limit.maxMs);
    }
    if (!ids) return undefined;
    const call = new TimedCall(this, server.name, { idleMs, maxMs }, req, ids, cancel);
    this.#live++;
    return call;
  }

  /**
   * The client gave up on a request of its session: a relayed stream of it is closed (the
   * upstream sends no answer to a cancelled request, so it would stay open for good). A request
   * still waiting for its answer keeps its time limit, which then frees what it holds.
   */
  cancelledByClient(session: string, requestId: unknown): void {
    this.#bySession.get(`${session} ${idKey(requestId)}`)?.cancelledByClient();
  }

  /**
   * @internal a call whose answer a gateway stream relays, found by `key` (session and request id)
   * for the client's notifications/cancelled until it ends. Only such a call (nothing else is
   * cancelled here): an entry for every call, with the call holding its caller's promise, had V8
   * promote ≈ 6 KB of every call to the old generation (docs/performance.md, "Objects that
   * outlived their call").
   */
  streaming(call: TimedCall, key: string): void {
    this.#bySession.set(key, call);
  }

  /** @internal the call's end (once); `sessionKey`, what it was found by for notifications/cancelled */
  ended(call: TimedCall, sessionKey: string | undefined): void {
    this.#live--;
    if (sessionKey !== undefined && this.#bySession.get(sessionKey) === call) this.#bySession.delete(sessionKey);
  }

  /** @internal */
  expired(e: TimeoutEvent): void {
    this.#onTimeout(e);
  }

  /** @internal */
  interrupt(key: string, error?: GatewayError, ids?: readonly JsonRpcId[]): boolean {
    return this.#interrupt(key, error, ids);
  }
}

/** One request under its time limit, from its start until its answer is over. */
export class TimedCall {
  readonly #stage: Deadlines;
  readonly #server: string;
  readonly #timeout: { readonly idleMs: number; readonly maxMs: number };
  readonly #req: PipelineRequest;
  readonly #ids: readonly JsonRpcId[];
  /** The requests not answered yet, by idKey (for a single request: its key alone, no map). */
  readonly #unanswered: Map<string, JsonRpcId> | undefined;
  #unansweredKey: string | undefined;
  /** What the call is found by for the client's notifications/cancelled, once its answer is relayed as a stream. */
  #sessionKey: string | undefined;
  readonly #cancel: ((id: JsonRpcId, reason: string) => void) | undefined;
  /** The time limit as the upstream side sees it: ends the request on expiry. */
  readonly expiry = new RequestExpiry<GatewayError>();
  readonly #deadline: Deadline;
  #whenDone: (() => void)[] | undefined;
  /** The answer's body while it is this stage's to cut on expiry: read here (`activity`), or not yet relayed. */
  #body: { readonly source: Readable; readonly activity: Activity | undefined } | undefined;
  /** The gateway stream that relays the answer, once the hub took it. */
  #streamKey: string | undefined;
  #done = false;

  constructor(stage: Deadlines, server: string, timeout: { readonly idleMs: number; readonly maxMs: number }, req: PipelineRequest, ids: readonly JsonRpcId[], cancel: ((id: JsonRpcId, reason: string) => void) | undefined) {
    this.#stage = stage;
    this.#server = server;
    this.#timeout = timeout;
    this.#req = req;
    this.#ids = ids;
    if (ids.length === 1) this.#unansweredKey = idKey(ids[0]);
    else this.#unanswered = new Map(ids.map((id) => [idKey(id), id]));
    this.#cancel = cancel;
    this.#deadline = new Deadline(timeout.idleMs, timeout.maxMs, (reason) => this.#expire(reason));
  }

  /** Runs `fn` once the call is over (answered, failed or timed out). */
  whenDone(fn: () => void): void {
    if (this.#done) fn();
    else (this.#whenDone ??= []).push(fn);
  }

  /**
   * The upstream's answer, within the limit. When it does not come in time (an answer that still
   * comes is dropped), a single request's promise rejects with MCPGW_ERR_UPSTREAM_TIMEOUT and a
   * batch's resolves to a JSON array of that error for each of its requests. A streamed body
   * keeps the limit until the answer is over: on expiry an SSE body ends with the error as the
   * answer to each request still unanswered, a JSON body fails with it.
   */
  response(pending: Promise<UpstreamResponse>): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      // Told by the expiry, as undici is: the call itself holds no way to this promise (see Deadlines.streaming).
      const expired = () => {
        const err = this.expiry.reason!;
        if (!this.#req.batch) return reject(err);
        resolve({ status: 200, headers: { 'content-type': 'application/json' }, body: errorsBody(err, this.#ids) });
      };
      this.expiry.on('abort', expired);
      pending.then(
        (res) => {
          this.expiry.removeListener('abort', expired);
          if (this.expiry.aborted) return dropBody(res);
          resolve(this.#follow(res));
        },
        (err: unknown) => {
          this.expiry.removeListener('abort', expired);
          this.finish();
          reject(err as Error);
        },
      );
    });
  }

  /** The call is over (answered, or failed otherwise): the limit is lifted. */
  finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#deadline.clear();
    this.#ended();
  }

  /** @internal an SSE event of an answer read here (Activity): activity, and maybe the answer to one of the requests. */
  event(event: string): void {
    if (this.#done) return;
    this.#deadline.touch();
    // Only an event that can be a response is read further (parseAnswer parses only such data).
    if (!event.includes('"result"') && !event.includes('"error"')) return;
    const data = sseFields(event).data;
    const m = data === undefined ? undefined : parseAnswer(data)?.response;
    if (m) this.#answered(m.id);
  }

  #answered(id: unknown): void {
    const key = idKey(id);
    if (this.#unanswered === undefined) {
      if (key !== this.#unansweredKey) return;
      this.#unansweredKey = undefined;
      this.finish();
    } else if (this.#unanswered.delete(key) && this.#unanswered.size === 0) this.finish();
  }

  /** What the event hub tells of a relayed answer (src/events/producer.ts). */
  #tap(): EventTap {
    return {
      event: () => {
        if (!this.#done) this.#deadline.touch();
      },
      answered: (id) => {
        if (!this.#done) this.#answered(id);
      },
      ended: () => this.finish(),
    };
  }

  /** See Deadlines.cancelledByClient. */
  cancelledByClient(): void {
    const key = this.#streamKey;
    if (key === undefined) return;
    this.finish();
    this.#stage.interrupt(key);
  }

  #follow(res: UpstreamResponse): UpstreamResponse {
    const body = res.body;
    if (body === null || typeof body === 'string') {
      this.finish();
      return res;
    }
    if (!res.headers['content-type']?.startsWith('text/event-stream')) return this.#followJson(res, body);
    if (this.#req.relayed && res.status === 200) return this.#followRelayed(res, body);
    return this.#followSse(res, body);
  }

  /**
   * A JSON answer: its bytes are no progress (one that drips is held to the idle limit too), so
   * nothing here reads them; the call is over with its body, which expiry cuts with the error.
   */
  #followJson(res: UpstreamResponse, body: Readable): UpstreamResponse {
    this.#body = { source: body, activity: undefined };
    // One no one reads any more (its reader gave up at the error) must not throw it at the process.
    body.on('error', ignore);
    // 'close' comes once: `on` spares the wrapper `once` would allocate per request.
    body.on('close', () => {
      this.#body = undefined;
      this.finish();
    });
    return res;
  }

  /**
   * An SSE answer the door hands to the event hub: its producer reads the events and tells them
   * here (`events`); expiry ends the hub's stream by its key (before the hub has it, the body is cut).
   */
  #followRelayed(res: UpstreamResponse, body: Readable): UpstreamResponse {
    this.#body = { source: body, activity: undefined };
    body.on('error', ignore);
    // Let go before the hub took it (the door failed on the way): nothing more to wait for.
    body.once('close', () => {
      if (this.#streamKey === undefined) this.finish();
    });
    const relayed = res.onStream;
    return {
      ...res,
      events: this.#tap(),
      onStream: (key) => {
        this.#body = undefined;
        this.#streaming(key);
        relayed?.(key);
      },
    };
  }

  /** An SSE answer a door reads itself: a tap reads its events on the way (Activity). */
  #followSse(res: UpstreamResponse, body: Readable): UpstreamResponse {
    const activity = new Activity(this);
    this.#body = { source: body, activity };
    // After expiry the source is cut on purpose: its errors (an aborted fetch) are not the answer's.
    body.on('error', (err) => {
      if (!this.expiry.aborted) activity.destroy(err);
    });
    activity.once('close', () => {
      this.#body = undefined;
      if (!body.destroyed) body.destroy();
      this.finish();
    });
    body.pipe(activity);
    const relayed = res.onStream;
    return {
      ...res,
      body: activity,
      onStream: (key) => {
        this.#streaming(key);
        relayed?.(key);
      },
    };
  }

  /** The hub relays the answer as gateway stream `key`: the client's notifications/cancelled finds it now. */
  #streaming(key: string): void {
    this.#streamKey = key;
    if (this.#done || this.#req.session === undefined || this.#req.batch) return;
    this.#sessionKey = `${this.#req.session} ${idKey(this.#ids[0])}`;
    this.#stage.streaming(this, this.#sessionKey);
  }

  #ended(): void {
    this.#stage.ended(this, this.#sessionKey);
    const whenDone = this.#whenDone;
    this.#whenDone = undefined;
    if (whenDone) for (const fn of whenDone) fn();
  }

  #expire(reason: 'idle' | 'max'): void {
    if (this.#done) return;
    this.#done = true;
    const limit = reason === 'idle' ? `no progress for ${this.#timeout.idleMs} ms` : `over the ${this.#timeout.maxMs} ms maximum`;
    const err = new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `server "${this.#server}": ${limit}`);
    const unanswered = this.#unanswered ? [...this.#unanswered.values()] : this.#unansweredKey !== undefined ? [this.#ids[0]!] : [];
    this.#stage.expired({ server: this.#server, door: this.#req.door, id: unanswered[0] ?? null, reason });
    // The answer first, then the cancellations: whatever they end, the client's answer is on its way.
    if (this.#body?.activity) {
      const { source, activity } = this.#body;
      source.unpipe(activity);
      activity.expire(err, unanswered);
      source.destroy();
    } else if (this.#body) {
      this.#body.source.destroy(err);
    } else if (this.#streamKey !== undefined) {
      this.#stage.interrupt(this.#streamKey, err, unanswered);
    }
    this.expiry.expire(err);
    for (const id of unanswered) this.#cancel?.(id, `gateway timeout (${reason})`);
    this.#ended();
  }
}

/**
 * A request's Expiry (src/upstream/types.ts): its listeners are told once, when it expires (its
 * time is up, or, for a translated call, its caller gave up: src/translate/to-session.ts); the
 * AbortSignal is made only for what asks for one (a retry's backoff, a 2026-07-28 call's
 * cancellation, a wait for a connection slot).
 */
export class RequestExpiry<R extends Error = Error> implements Expiry {
  #reason: R | undefined;
  #listeners: (() => void)[] | undefined;
  #controller: AbortController | undefined;

  get aborted(): boolean {
    return this.#reason !== undefined;
  }

  get reason(): R | undefined {
    return this.#reason;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#reason) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  on(_event: 'abort', listener: () => void): this {
    (this.#listeners ??= []).push(listener);
    return this;
  }

  once(event: 'abort', listener: () => void): this {
    // Told at most once anyway.
    return this.on(event, listener);
  }

  removeListener(_event: 'abort', listener: () => void): this {
    const i = this.#listeners?.indexOf(listener) ?? -1;
    if (i >= 0) this.#listeners!.splice(i, 1);
    return this;
  }

  /** It expired: the signal aborts and each listener is told, in the order they came. */
  expire(reason: R): void {
    if (this.#reason) return;
    this.#reason = reason;
    this.#controller?.abort(reason);
    const listeners = this.#listeners;
    this.#listeners = undefined;
    // A listener may remove itself or another one (undici does, as it ends the request): the list as it was.
    if (listeners) for (const fn of listeners) fn();
  }
}

/**
 * Passes an SSE answer's body on and tells the call its events (activity, and maybe the answer).
 * On expiry it ends with the error instead.
 */
class Activity extends Transform {
  readonly #call: TimedCall;
  #events: SseSplitter | undefined = new SseSplitter();

  constructor(call: TimedCall) {
    super();
    this.#call = call;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#events) {
      try {
        this.#events.push(chunk, (event) => {
          if (isRealEvent(event)) this.#call.event(event);
        });
      } catch {
        // An event too large to read: nothing more is looked at (the hub refuses it).
        this.#events = undefined;
      }
    }
    callback(null, chunk);
  }

  expire(err: GatewayError, ids: readonly JsonRpcId[]): void {
    if (this.destroyed || this.writableEnded) return;
    // The upstream's part is cut where it stands (a partial event is ended first); the error is
    // the stream's last message, once for each request still waiting.
    const cut = this.#events === undefined || this.#events.take().length > 0 ? '\n\n' : '';
    this.end(cut + ids.map((id) => `event: message\ndata: ${errorBody(err, id)}\n\n`).join(''));
  }
}

const DATA_LINE = /(?:^|\n)data: ?\S/;

/** An SSE event with data: not a comment, a keep-alive, a priming event or a bare id/retry line. */
function isRealEvent(event: string): boolean {
  return DATA_LINE.test(event);
}

function ignore(): void {}

function dropBody(res: UpstreamResponse): void {
  const body = res.body;
  if (body && typeof body !== 'string') body.destroy();
}
