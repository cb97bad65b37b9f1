import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { guardRequest, guardResponse, guardStream, type GuardPlan } from '../auth/guard.ts';
import { mayUse } from '../auth/policy.ts';
import { stampPrincipal, type Principal, type StampedCaller } from '../auth/principal.ts';
import { errorResponse, GatewayError, type JsonRpcId } from '../errors.ts';
import type { GatewayContext } from '../http/context.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { STATELESS_REVISION } from '../protocol/revisions.ts';
import { CACHEABLE_RESULTS, ENVELOPE_KEYS, META_SERVER_INFO, META_SUBSCRIPTION_ID, nameOf, type RequestEnvelope } from '../protocol/stateless.ts';
import { GATEWAY_ORIGINATED, type Admission } from '../pipeline/admission.ts';
import { RequestExpiry } from '../pipeline/deadline.ts';
import type { HeldSlots } from '../pipeline/request.ts';
import { RETRY_STATUSES } from '../resilience/retry.ts';
import { clientRequest, SSE_HEADERS, type Expiry, type Upstream, type UpstreamResponse } from '../upstream/types.ts';
import { emit, isNotification, isRequest, isResponse, MessageReader, type Message } from './messages.ts';
import { sessionHeaders, upstreamRequest, type PooledSession } from './session-pool.ts';
import type { ContinuationState } from './state.ts';
import { MAX_RESOURCE_SUBSCRIPTIONS, requireObject, type Parked, type Translator } from './translator.ts';
import { discard, drain } from '../upstream/body.ts';

/**
 * A 2026-07-28 client reaching a session-era upstream. The gateway holds an upstream session per
 * (server, principal, client capabilities) and speaks the session era on it: request ids are the
 * gateway's (many clients share one session), the `_meta` envelope is taken off, results get
 * `resultType` and caching hints, server→client requests become `input_required` results (the
 * call is parked until the client retries with the answers), `subscriptions/listen` rides the
 * session's GET stream, and a client that closes its response stream cancels the call upstream.
 */

export interface StatelessCall {
  readonly gw: GatewayContext;
  readonly server: string;
  readonly upstream: Upstream;
  /** The authenticated caller (undefined when auth is off). */
  readonly caller: Principal | undefined;
  /**
   * compose: the caller as the front door checked them (src/auth/principal.ts), carried on the
   * requests written for them, so a virtual server checks each member's rule against them.
   */
  readonly checked: StampedCaller | undefined;
  /** Whom per-caller caps count it against (src/http/mcp.ts Call.holder). */
  readonly holder: string;
  readonly message: Envelope;
  readonly meta: RequestEnvelope;
  /** pipeline: the request passed the chain (src/pipeline/pipeline.ts; the exchange's request carries it). */
  readonly admission: Admission;
  /** Aborted when the client's response closes before it was complete. */
  readonly signal: AbortSignal;
  /**
   * pipeline: the concurrency slots the request holds (src/pipeline/concurrency.ts): a call
   * parked for input keeps them until it ends, as it runs on upstream.
   */
  readonly slots?: HeldSlots | undefined;
}

export interface Translated {
  readonly res: UpstreamResponse;
  /** Names the policy hid (for the audit log). */
  readonly hidden?: readonly string[];
}

/** Server→client requests that have an `input_required` form, and the capability each needs. */
const INPUT_KINDS: Readonly<Record<string, string>> = { 'elicitation/create': 'elicitation', 'sampling/createMessage': 'sampling', 'roots/list': 'roots' };
const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
/** Server→client requests sent together (the SDK sends a round's requests at once) are answered as one round. */
const COALESCE_MS = 25;
const JSON_HEADERS = { 'content-type': 'application/json' };

export async function statelessToSession(call: StatelessCall): Promise<Translated> {
  const t = call.gw.translator;
  const params = call.message.params ?? {};
  if (params.requestState !== undefined) return { res: await resume(t, call) };
  if (call.message.method === 'server/discover') {
    const session = await acquire(t, call);
    return { res: json(call.message.id, discoverResult(session)) };
  }
  if (call.message.method === 'subscriptions/listen') return { res: await listen(t, call) };
  return start(t, call);
}

function acquire(t: Translator, call: StatelessCall): Promise<PooledSession> {
  const info = call.meta.clientInfo as Record<string, unknown> | undefined;
  return t.pool.acquire(call.server, call.upstream, call.caller?.id ?? '', call.holder, call.meta.clientCapabilities, info, call.checked);
}

/** The parts of a 2026-07-28 request a session-era server understands: no envelope keys, no MRTR fields. */
function sessionParams(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!params) return undefined;
  const { _meta, inputResponses: _i, requestState: _r, ...rest } = params;
  if (_meta && typeof _meta === 'object') {
    const kept = Object.fromEntries(Object.entries(_meta as Record<string, unknown>).filter(([k]) => !ENVELOPE_KEYS.includes(k)));
    if (Object.keys(kept).length > 0) rest._meta = kept;
  }
  return rest;
}

/** Sends a request on the pooled session, opening a new one once if the upstream forgot it. */
async function send(t: Translator, call: StatelessCall, message: Message): Promise<{ session: PooledSession; res: UpstreamResponse; guard: GuardPlan | undefined }> {
  const policy = call.caller && call.gw.auth?.policy(call.server);
  for (let attempt = 0; ; attempt++) {
    const session = await acquire(t, call);
    const req = upstreamRequest(message, session.protocolVersion, call.admission, stampPrincipal(sessionHeaders(session.protocolVersion), call.checked));
    const guard = policy?.filtersItems ? guardRequest(policy, call.caller!, req.messages) : undefined;
    // The call's cancellation (its time limit, its client gone) ends the wait for a connection slot
    // and for the answer's headers, not the answer: a call parked upstream for the client's input
    // outlives its request.
    const wait = untilAnswered(call.signal);
    try {
      const sent = guard ? clientRequest(req.headers, guard.messages, false, req.protocolVersion, call.admission) : req;
      const res = await session.upstream.post(session.claims, { ...sent, expiry: wait.expiry });
      return { session, res: guard ? await guardResponse(res, guard) : res, guard };
    } catch (err) {
      if (attempt === 0 && err instanceof GatewayError && err.code === 'MCPGW_ERR_SESSION_NOT_FOUND') {
        t.pool.drop(session);
        continue;
      }
      throw err;
    } finally {
      wait.done();
    }
  }
}

/**
 * `signal` as an Expiry (src/upstream/types.ts) until `done`: an upstream request given up while it
 * waits for a connection slot is never sent, and one given up before its headers lets go of its
 * connection; after `done` the signal no longer reaches it (undici would cut the answer's body).
 */
function untilAnswered(signal: AbortSignal): { readonly expiry: Expiry; done(): void } {
  const expiry = new RequestExpiry();
  const expire = () => expiry.expire(signal.reason as Error);
  if (signal.aborted) expire();
  else signal.addEventListener('abort', expire, { once: true });
  return { expiry, done: () => signal.removeEventListener('abort', expire) };
}

/** A call on the upstream session, from the request until its final answer (maybe over several client requests). */
class UpstreamCall implements Parked {
  readonly t: Translator;
  readonly session: PooledSession;
  readonly upstreamId: string;
  readonly reader: MessageReader;
  readonly method: string;
  readonly name: string;
  readonly principal: string;
  readonly logLevel: string | undefined;
  /** Input requests the client has not answered yet, by key. */
  readonly pending = new Map<string, { readonly upstreamId: JsonRpcId; readonly method: string; readonly params: unknown }>();
  clientId: JsonRpcId;
  #done = false;
  /** pipeline: how long the gateway's own cache keeps this server's results (0: no cache). */
  readonly cacheTtlMs: number;
  #parkedAs: string | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #unbind: (() => void) | undefined;
  /** The concurrency slots of the client request driving the call, until the call keeps some. */
  #slots: HeldSlots | undefined;
  /** Gives back the slots the call kept when it was first parked (it holds them until it ends). */
  #release: (() => void) | undefined;

  constructor(t: Translator, session: PooledSession, upstreamId: string, res: UpstreamResponse, call: StatelessCall, guard: GuardPlan | undefined) {
    this.t = t;
    this.session = session;
    this.upstreamId = upstreamId;
    this.method = call.message.method!;
    this.name = nameOf(this.method, call.message.params) ?? '';
    this.principal = call.caller?.id ?? '';
    this.logLevel = call.meta.logLevel;
    this.clientId = call.message.id;
    this.cacheTtlMs = call.gw.config.servers[call.server]!.cache?.ttlMs ?? 0;
    this.#slots = call.slots;
    session.busy++;
    session.lastUsed = Date.now();
    // auth: what the upstream sends again is filtered for the caller like the first part.
    const resume = async (lastEventId: string) => {
      const rest = await resumeStream(session, lastEventId, call.checked);
      return rest && guard ? guardStream(rest, guard) : rest;
    };
    // SEP-1699: an upstream that has the call polled is polled within the server's time limit.
    this.reader = new MessageReader(res, resume, call.gw.config.servers[call.server]!.timeout.idleMs);
  }

  /** Reads the upstream until the final answer or a round of input requests; writes what the client should see. */
  async drive(out: PassThrough, signal: AbortSignal): Promise<void> {
    try {
      for (;;) {
        const m = await this.reader.next(this.pending.size > 0 ? COALESCE_MS : undefined);
        if (this.#done || signal.aborted) return;
        if (m === MessageReader.TIMEOUT) return this.#park(out);
        if (m === undefined) {
          emit(out, errorResponse(this.reader.failure ?? new GatewayError('MCPGW_ERR_STREAM_LOST'), this.clientId));
          return this.finish();
        }
        if (isResponse(m) && m.id === this.upstreamId) {
          emit(out, this.final(m));
          return this.finish();
        }
        if (isRequest(m)) await this.#serverRequest(m);
        else if (isNotification(m)) {
          const n = this.#notification(m);
          if (n) emit(out, n);
        }
      }
    } finally {
      out.end();
    }
  }

  /** While this client request is answered, its response closing early cancels the call. */
  bind(signal: AbortSignal): void {
    this.#unbind?.();
    const cancel = () => {
      if (!this.#parkedAs) this.finish('the client closed the response stream');
    };
    if (signal.aborted) return cancel();
    signal.addEventListener('abort', cancel, { once: true });
    this.#unbind = () => signal.removeEventListener('abort', cancel);
  }

  /** The final answer in 2026-07-28 terms, under the client's id. */
  final(m: Message): Message {
    if (m.error) {
      // 2026-07-28 renumbered "resource not found" from -32002 to -32602.
      const error = m.error.code === -32002 && this.method === 'resources/read' ? { ...m.error, code: -32602 } : m.error;
      return { jsonrpc: '2.0', id: this.clientId, error };
    }
    return { jsonrpc: '2.0', id: this.clientId, result: completeResult(this.method, m.result ?? {}, this.session, this.cacheTtlMs) };
  }

  expire(reason: string): void {
    this.finish(reason);
  }

  /** Ends the call; with a reason while unfinished upstream, cancels it there. */
  finish(cancelReason?: string): void {
    if (this.#done) return;
    this.#done = true;
    this.#unbind?.();
    clearTimeout(this.#expiry);
    if (this.#parkedAs) this.t.parked.delete(this.#parkedAs);
    this.#release?.();
    this.t.pool.release(this.session);
    this.session.lastUsed = Date.now();
    this.reader.close();
    if (cancelReason) void postUpstream(this.t, this.session, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: this.upstreamId, reason: cancelReason } });
  }

  /** The client answered (some of) the input requests: pass them on; the keys still missing stay pending. */
  async answer(responses: Record<string, unknown>): Promise<void> {
    for (const [key, p] of this.pending) {
      const value = responses[key];
      if (value === null || typeof value !== 'object' || Array.isArray(value)) continue;
      this.pending.delete(key);
      await postUpstream(this.t, this.session, { jsonrpc: '2.0', id: p.upstreamId, result: value as Record<string, unknown> });
    }
  }

  /** The input_required result for what is pending, with a fresh sealed requestState. */
  inputRequired(): Message {
    const expires = Date.now() + this.t.inputTimeoutMs;
    const requestState = this.t.sealer.seal({ call: this.#parkedAs!, node: this.t.node, principal: this.principal, server: this.session.server, method: this.method, name: this.name, expires });
    const inputRequests = Object.fromEntries([...this.pending].map(([key, p]) => [key, { method: p.method, params: p.params }]));
    return { jsonrpc: '2.0', id: this.clientId, result: { resultType: 'input_required', inputRequests, requestState } };
  }

  /** The server it was called on. */
  get server(): string {
    return this.session.server;
  }

  /**
   * The slots the call holds (kept when first parked), which a retry going on with it names
   * instead of taking its own (src/http/stateless.ts); undefined when it holds none.
   */
  get heldSlots(): HeldSlots | undefined {
    return this.#release ? this.#slots : undefined;
  }

  /** Takes the call out of the parked set for a retry (holding `slots`); the caller drives it on. */
  unpark(slots: HeldSlots | undefined): void {
    // A call that holds none (its tool was capped by a reload since) keeps the retry's when parked again.
    if (!this.#release) this.#slots = slots;
    clearTimeout(this.#expiry);
    if (this.#parkedAs) this.t.parked.delete(this.#parkedAs);
    this.#parkedAs = undefined;
  }

  park(): void {
    // A parked call belongs to no client response: the one that asked may close whenever it likes
    // (even after the retry has taken the call up again), and must not cancel it then.
    this.#unbind?.();
    this.#unbind = undefined;
    // pipeline: it runs on upstream, so it counts under its tool's concurrency cap until it ends
    // (answered, cancelled, given up), not only until this answer is over.
    this.#release ??= this.#slots?.keep();
    this.#parkedAs ??= randomBytes(12).toString('base64url');
    this.t.parked.set(this.#parkedAs, this);
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(() => this.finish('the client did not answer the input requests in time'), this.t.inputTimeoutMs);
    this.#expiry.unref();
  }

  #park(out: PassThrough): void {
    this.park();
    emit(out, this.inputRequired());
  }

  async #serverRequest(m: Message): Promise<void> {
    const kind = INPUT_KINDS[m.method!];
    if (kind === undefined || !this.session.clientCapabilities[kind]) {
      // ping has an answer; anything else cannot reach a 2026-07-28 client.
      const reply = m.method === 'ping' ? { result: {} } : { error: { code: -32601, message: `${m.method} cannot be forwarded to this client (revision ${STATELESS_REVISION}${kind ? `, no ${kind} capability` : ''})` } };
      await postUpstream(this.t, this.session, { jsonrpc: '2.0', id: m.id, ...reply });
      return;
    }
    let key = kind;
    for (let n = 2; this.pending.has(key); n++) key = `${kind}-${n}`;
    this.pending.set(key, { upstreamId: m.id ?? null, method: m.method!, params: m.params ?? {} });
  }

  #notification(m: Message): Message | undefined {
    if (m.method === 'notifications/progress') return m;
    if (m.method === 'notifications/message') {
      // 2026-07-28: no log messages unless this request asked for a level.
      if (this.logLevel === undefined) return undefined;
      const level = (m.params as { level?: string } | undefined)?.level ?? 'info';
      return LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(this.logLevel) ? m : undefined;
    }
    // list_changed, resources/updated, cancelled…: subscriptions/listen carries those.
    return undefined;
  }
}

async function start(t: Translator, call: StatelessCall): Promise<Translated> {
  const upstreamId = t.nextId();
  const message: Message = { jsonrpc: '2.0', id: upstreamId, method: call.message.method };
  const params = sessionParams(call.message.params);
  if (params) message.params = params;
  const { session, res, guard } = await send(t, call, message);
  // Failed without an answer (a proxy's 502…): that HTTP error is the answer, and the
  // pipeline's retry stage may send a safe call again (src/pipeline/retry.ts).
  if (RETRY_STATUSES.has(res.status)) return { res };
  const uc = new UpstreamCall(t, session, upstreamId, res, call, guard);
  uc.bind(call.signal);
  return { res: await answer(uc, call.signal), hidden: guard?.hidden };
}

/**
 * The client's answer: JSON when the first thing the upstream says is the final answer (so an
 * error gets its HTTP status), else an SSE stream the call is driven on.
 */
async function answer(uc: UpstreamCall, signal: AbortSignal): Promise<UpstreamResponse> {
  const first = await uc.reader.next();
  if (first === undefined || first === MessageReader.TIMEOUT) {
    uc.finish();
    throw uc.reader.failure ?? new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', 'the answer carried no JSON-RPC response');
  }
  if (isResponse(first) && first.id === uc.upstreamId) {
    uc.finish();
    const final = uc.final(first);
    return { status: (final.error && ERROR_STATUS[final.error.code]) ?? 200, headers: JSON_HEADERS, body: JSON.stringify(final) };
  }
  uc.reader.unshift(first);
  const out = new PassThrough();
  void uc.drive(out, signal);
  return { status: 200, headers: { ...SSE_HEADERS }, body: out };
}

/** HTTP statuses 2026-07-28 gives some errors (when the answer is JSON). */
const ERROR_STATUS: Readonly<Record<number, number>> = { [-32601]: 404, [-32020]: 400, [-32021]: 400, [-32022]: 400 };

/** A retry carrying `requestState`: answer the parked call's input requests and go on with it. */
async function resume(t: Translator, call: StatelessCall): Promise<UpstreamResponse> {
  const params = call.message.params ?? {};
  const state = openState(t, call.server, call.caller?.id ?? '', call.message);
  if (!state) throw new GatewayError('MCPGW_ERR_REQUEST_STATE');
  const uc = t.parked.get(state.call);
  if (!(uc instanceof UpstreamCall)) throw new GatewayError('MCPGW_ERR_REQUEST_STATE', state.node === t.node ? 'the call is over' : 'the call is held by another gateway replica');
  // Checked before the call leaves the parked set: a bad retry leaves it parked, to be retried.
  const responses = params.inputResponses === undefined ? {} : requireObject(params.inputResponses, 'inputResponses');
  uc.unpark(call.slots);
  uc.clientId = call.message.id;
  await uc.answer(responses);
  if (uc.pending.size > 0) {
    // Not every request was answered: ask again for the rest (the spec's SHOULD, rather than an error).
    uc.park();
    return json(call.message.id, uc.inputRequired().result!);
  }
  uc.bind(call.signal);
  return answer(uc, call.signal);
}

/** The state a retry's `requestState` carries, when it is this request's (same server, caller, method, name) and not expired. */
function openState(t: Translator, server: string, principal: string, message: Envelope): ContinuationState | undefined {
  const state = t.sealer.open(message.params?.requestState);
  if (!state || state.expires < Date.now() || state.server !== server || state.principal !== principal || state.method !== message.method) return undefined;
  return state.name === (nameOf(message.method!, message.params) ?? '') ? state : undefined;
}

/**
 * pipeline: the concurrency slots held by the parked call `message` (a retry) goes on with,
 * so the retry takes none of its own for it (src/pipeline/concurrency.ts); undefined for
 * anything else.
 */
export function parkedSlots(t: Translator, server: string, principal: string, message: Envelope): HeldSlots | undefined {
  const state = openState(t, server, principal, message);
  const uc = state && t.parked.get(state.call);
  return uc instanceof UpstreamCall ? uc.heldSlots : undefined;
}

/** Posts one message the gateway writes (an answer, a cancellation) on the session; failures only end the call. */
async function postUpstream(t: Translator, session: PooledSession, message: Message): Promise<void> {
  try {
    const res = await session.upstream.post(session.claims, upstreamRequest(message, session.protocolVersion, GATEWAY_ORIGINATED));
    if (res.body !== null && typeof res.body !== 'string') drain(res.body);
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'MCPGW_ERR_SESSION_NOT_FOUND') t.pool.drop(session);
  }
}

/**
 * A POST answer stream that ended before its answer: the upstream's own resumption, on its GET,
 * for `checked` (the caller whose call it answers; a virtual server checks its members' rules
 * against them), or for no caller.
 */
async function resumeStream(session: PooledSession, lastEventId: string, checked: StampedCaller | undefined) {
  const res = await session.upstream.get(session.claims, upstreamRequest({ jsonrpc: '2.0', method: 'notifications/resume' }, session.protocolVersion, GATEWAY_ORIGINATED, stampPrincipal(sessionHeaders(session.protocolVersion, 'text/event-stream'), checked)), lastEventId);
  if (res.status === 200 && res.body !== null && typeof res.body !== 'string') return res.body;
  if (res.body !== null && typeof res.body !== 'string') discard(res.body);
  return undefined;
}

export function completeResult(method: string, result: Record<string, unknown>, session: { readonly serverInfo: Record<string, unknown> | undefined }, cacheTtlMs = 0): Record<string, unknown> {
  const out: Record<string, unknown> = { ...result };
  out.resultType ??= 'complete';
  if (CACHEABLE_RESULTS.has(method)) {
    // The session era has no caching hints: immediately stale, and never shared across callers —
    // unless the server is configured with the gateway's cache (src/pipeline/cache.ts), which then
    // keeps it for this caller as long as it says.
    out.ttlMs ??= cacheTtlMs;
    out.cacheScope ??= 'private';
  }
  const meta = (out._meta as Record<string, unknown> | undefined) ?? {};
  if (session.serverInfo && meta[META_SERVER_INFO] === undefined) out._meta = { ...meta, [META_SERVER_INFO]: session.serverInfo };
  return out;
}

function discoverResult(session: PooledSession): Record<string, unknown> {
  const result: Record<string, unknown> = { supportedVersions: [STATELESS_REVISION], capabilities: session.capabilities };
  if (session.instructions !== undefined) result.instructions = session.instructions;
  return completeResult('server/discover', result, session);
}

function json(id: JsonRpcId, result: Record<string, unknown>): UpstreamResponse {
  return { status: 200, headers: JSON_HEADERS, body: JSON.stringify({ jsonrpc: '2.0', id, result }) };
}

// ---------------------------------------------------------------------------------------------
// subscriptions/listen over the session's GET stream.

interface Filter {
  toolsListChanged?: boolean;
  promptsListChanged?: boolean;
  resourcesListChanged?: boolean;
  resourceSubscriptions?: string[];
}

interface Listener {
  readonly id: JsonRpcId;
  readonly filter: Filter;
  readonly out: PassThrough;
}

/** One upstream GET stream per pooled session, fanned out to the listen streams on it. */
class Fanout {
  readonly session: PooledSession;
  readonly listeners = new Set<Listener>();
  readonly #subscribed = new Set<string>();
  #reader: MessageReader | undefined;
  #opening: Promise<boolean> | undefined;
  /** The upstream GET stream is over (ended, or handed over): a listener that comes now is ended at once. */
  #over = false;
  #handedOver = false;
  readonly #t: Translator;

  constructor(t: Translator, session: PooledSession) {
    this.#t = t;
    this.session = session;
  }

  /** Opens the GET stream if needed; false when the upstream has none (405) or it failed. */
  open(): Promise<boolean> {
    this.#opening ??= (async () => {
      const s = this.session;
      // Shared by the principal's listeners, whatever each one's token: no caller is carried (fail closed).
      const res = await s.upstream.get(s.claims, upstreamRequest({ jsonrpc: '2.0', method: 'notifications/listen' }, s.protocolVersion, GATEWAY_ORIGINATED, sessionHeaders(s.protocolVersion, 'text/event-stream')));
      if (res.status !== 200 || res.body === null || typeof res.body === 'string') {
        if (res.body !== null && typeof res.body !== 'string') drain(res.body);
        return false;
      }
      this.#reader = new MessageReader(res, (at) => resumeStream(s, at, undefined));
      void this.#pump(this.#reader);
      if (this.#handedOver) this.#reader.close();
      return true;
    })().catch(() => false);
    return this.#opening;
  }

  /**
   * A reload retired the session (its server's pool was replaced or removed): the upstream GET
   * stream on the old pool is closed, and each listen stream ends as when the upstream ends it
   * (its request's answer). Its client listens again — on the new pool — and its listener going
   * lets the session be ended upstream, so the old pool is not held until timeout.max.
   */
  handOver(): void {
    this.#handedOver = true;
    this.#reader?.close();
  }

  /** Adds a listener; one that comes when the stream is over already is ended at once, as the others were. */
  add(l: Listener): void {
    this.session.busy++;
    this.listeners.add(l);
    if (this.#over) endListener(l);
  }

  async subscribe(uris: readonly string[]): Promise<void> {
    for (const uri of uris) {
      if (this.#subscribed.has(uri)) continue;
      this.#subscribed.add(uri);
      await postUpstream(this.#t, this.session, { jsonrpc: '2.0', id: this.#t.nextId(), method: 'resources/subscribe', params: { uri } });
    }
  }

  remove(l: Listener): void {
    if (!this.listeners.delete(l)) return;
    this.#t.pool.release(this.session);
    if (this.listeners.size === 0) {
      this.#t.fanouts.delete(this.session);
      this.#reader?.close();
    }
  }

  async #pump(reader: MessageReader): Promise<void> {
    for (;;) {
      const m = await reader.next();
      if (m === undefined || m === MessageReader.TIMEOUT) break;
      if (isRequest(m)) {
        // Out of any call there is nothing to attach an input request to.
        const reply = m.method === 'ping' ? { result: {} } : { error: { code: -32601, message: `${m.method} cannot be forwarded to a ${STATELESS_REVISION} client outside a call` } };
        await postUpstream(this.#t, this.session, { jsonrpc: '2.0', id: m.id, ...reply });
        continue;
      }
      if (!isNotification(m)) continue;
      for (const l of this.listeners) if (wants(l.filter, m)) emit(l.out, tag(m, l.id));
    }
    // The upstream ended the stream: end each subscription gracefully (its listen request's answer).
    this.#over = true;
    if (this.#t.fanouts.get(this.session) === this) this.#t.fanouts.delete(this.session);
    for (const l of [...this.listeners]) endListener(l);
  }
}

/** Ends a subscription gracefully: its listen request's answer, then the end of its stream. */
function endListener(l: Listener): void {
  emit(l.out, { jsonrpc: '2.0', id: l.id, result: { resultType: 'complete', _meta: { [META_SUBSCRIPTION_ID]: l.id } } });
  l.out.end();
}

function wants(f: Filter, m: Message): boolean {
  switch (m.method) {
    case 'notifications/tools/list_changed':
      return f.toolsListChanged === true;
    case 'notifications/prompts/list_changed':
      return f.promptsListChanged === true;
    case 'notifications/resources/list_changed':
      return f.resourcesListChanged === true;
    case 'notifications/resources/updated':
      return typeof m.params?.uri === 'string' && (f.resourceSubscriptions ?? []).includes(m.params.uri);
    default:
      return false;
  }
}

function tag(m: Message, subscription: JsonRpcId): Message {
  const params = { ...m.params, _meta: { ...(m.params?._meta as Record<string, unknown> | undefined), [META_SUBSCRIPTION_ID]: subscription } };
  return { jsonrpc: '2.0', method: m.method, params };
}

/** What of the filter this upstream can deliver (the acknowledgment says so). */
function honored(f: Filter, caps: Record<string, unknown>, streaming: boolean): Filter {
  if (!streaming) return {};
  const cap = (k: string) => (caps[k] ?? {}) as { listChanged?: boolean; subscribe?: boolean };
  const out: Filter = {};
  if (f.toolsListChanged && cap('tools').listChanged) out.toolsListChanged = true;
  if (f.promptsListChanged && cap('prompts').listChanged) out.promptsListChanged = true;
  if (f.resourcesListChanged && cap('resources').listChanged) out.resourcesListChanged = true;
  if (Array.isArray(f.resourceSubscriptions) && f.resourceSubscriptions.length > 0 && cap('resources').subscribe) {
    out.resourceSubscriptions = f.resourceSubscriptions.filter((u): u is string => typeof u === 'string');
  }
  return out;
}

async function listen(t: Translator, call: StatelessCall): Promise<UpstreamResponse> {
  const requested = (call.message.params?.notifications ?? {}) as Filter;
  if (Array.isArray(requested.resourceSubscriptions) && requested.resourceSubscriptions.length > MAX_RESOURCE_SUBSCRIPTIONS) {
    throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', `a subscriptions/listen here may subscribe to at most ${MAX_RESOURCE_SUBSCRIPTIONS} resources`);
  }
  const session = await acquire(t, call);
  let fanout = t.fanouts.get(session);
  if (!fanout) {
    fanout = new Fanout(t, session);
    t.fanouts.set(session, fanout);
  }
  const streaming = await fanout.open();
  const filter = honored(requested, session.capabilities, streaming);
  // auth: a resource the caller may not use is acknowledged like an unknown one, and never
  // subscribed to upstream nor delivered.
  const policy = call.caller && call.gw.auth?.policy(call.server);
  const usable = policy?.filtersItems ? filter.resourceSubscriptions?.filter((uri) => mayUse(policy, 'resources', uri, call.caller!)) : filter.resourceSubscriptions;
  if (usable) await fanout.subscribe(usable);
  const out = new PassThrough();
  const listener: Listener = { id: call.message.id, filter: usable === filter.resourceSubscriptions ? filter : { ...filter, resourceSubscriptions: usable }, out };
  const f = fanout;
  const stop = () => f.remove(listener);
  call.signal.addEventListener('abort', stop, { once: true });
  out.once('close', stop);
  out.once('finish', stop);
  // The acknowledgment comes first, before anything the upstream sends on the subscription.
  emit(out, { jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { _meta: { [META_SUBSCRIPTION_ID]: call.message.id }, notifications: filter } });
  fanout.add(listener);
  return { status: 200, headers: { ...SSE_HEADERS }, body: out };
}

