import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { CallerTokens } from './token-exchange.ts';
import { UpstreamCredentials, upstreamTlsOptions, type OnBehalfOf } from './credentials.ts';
import type { HttpUpstreamConfig, ServerConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import { headerValue } from '../protocol/headers.ts';
import { holdsRequest } from '../protocol/jsonrpc.ts';
import { isSessionRevision, STATELESS_REVISION } from '../protocol/revisions.ts';
import { standardHeaders } from '../protocol/stateless.ts';
import type { SessionClaims } from '../session/token.ts';
import type { UpstreamEvents } from './events.ts';
import { ParamMarks } from './param-marks.ts';
import { anyAvailable, pickLeastLoaded, ReplicaState } from './replica.ts';
import { SSE_HEADERS, type ClientRequest, type Expiry, type ReplicaSnapshot, type SessionPlacement, type Upstream, type UpstreamHealth, type UpstreamResponse } from './types.ts';
import { discard, drain } from './body.ts';
import { RequestGate } from './gate.ts';
import { endWithBody, errorType, type ExchangeTracer } from './tracing.ts';

/** Connect-level failures: nothing reached the upstream, so the replica is gone or unreachable. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

// legacy: exported for 2024-11-05 SSE replicas (src/upstream/sse.ts), which connect the same way.
export class HttpReplica extends ReplicaState {
  /** As configured, secrets and all: for requests only, never for a label, a log line or an error. */
  readonly url: string;
  readonly pool: Pool;
  /** The `connections` cap on requests (GET streams are never held by it), if one is set. */
  readonly gate: RequestGate | undefined;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  /** auth: the gateway's own credentials for this replica (see src/upstream/credentials.ts). */
  readonly credentials: UpstreamCredentials | undefined;

  constructor(cfg: HttpUpstreamConfig, server: ServerConfig, callers?: CallerTokens) {
    // The key is the replica's public name (config/load.ts), not its URL: it is shown in metrics
    // and logs, and a query or userinfo may carry a secret.
    super(cfg.name, server.maxFails, server.failTimeoutMs);
    this.url = cfg.url;
    const url = new URL(cfg.url);
    this.path = url.pathname + url.search;
    this.headers = Object.fromEntries(Object.entries(cfg.headers).map(([k, v]) => [k.toLowerCase(), v]));
    this.credentials = cfg.credentials ? new UpstreamCredentials(cfg.credentials, callers) : undefined;
    this.pool = new Pool(url.origin, {
      connect: upstreamTlsOptions(cfg.tls),
      // Uncapped: GET streams hold a connection for as long as a client listens, and must never
      // leave requests queued behind them; `connections` caps requests only, in the gateway's own
      // queue (see RequestGate).
      connections: null,
      keepAliveTimeout: 30_000,
      connectTimeout: 5_000,
      // Response bodies are streams (SSE) that may idle for long; the gateway bounds headers only.
      bodyTimeout: 0,
      pipelining: 1,
    });
    this.gate = cfg.connections === undefined ? undefined : new RequestGate(cfg.connections);
  }

  /**
   * Sends a request; under a `connections` cap a POST or DELETE first waits for a slot, at most
   * `timeoutMs` (then 504, not held against the replica: the wait was the gateway's own). The
   * slot is held until the response body is done.
   */
  request(options: Dispatcher.RequestOptions, timeoutMs: number, server: string): Promise<Dispatcher.ResponseData> {
    if (!this.gate || options.method === 'GET') return this.pool.request(options);
    return this.#gated(this.gate, options, timeoutMs, server);
  }

  async #gated(gate: RequestGate, options: Dispatcher.RequestOptions, timeoutMs: number, server: string): Promise<Dispatcher.ResponseData> {
    // The gate's wait takes an AbortSignal; undici takes the request's Expiry as it is (see Expiry).
    const limit = options.signal as Stop | undefined;
    const signal = limit && 'signal' in limit ? limit.signal : limit;
    const release = await gate.acquire(timeoutMs, signal);
    if (!release) {
      if (signal?.aborted) throw new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', `server "${server}": the request was given up while it waited`);
      throw new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `server "${server}": all ${gate.size} connections to a replica stayed busy for requestTimeout`);
    }
    try {
      const res = await this.pool.request(options);
      res.body.once('close', release);
      return res;
    } catch (err) {
      release();
      throw err;
    }
  }

  async destroy(): Promise<void> {
    await this.pool.destroy().catch(() => {});
  }
}

/** A server whose replicas speak Streamable HTTP: the gateway forwards bytes both ways. */
/** The cause of an error for a request every replica turned away with a status (503): none ran it. */
export const NOT_TAKEN = 'MCPGW_NOT_TAKEN';

export class HttpUpstream implements Upstream {
  readonly kind = 'http' as const;
  readonly #server: ServerConfig;
  readonly #replicas: HttpReplica[];
  readonly #byKey = new Map<string, HttpReplica>();
  /** stateless: the tools' x-mcp-header marks, for the Mcp-Param-* headers of calls. */
  readonly #marks = new ParamMarks();
  readonly #events: UpstreamEvents;
  readonly #probes: NodeJS.Timeout[] = [];
  /** traces: undefined when tracing is off. */
  readonly #tracer: ExchangeTracer | undefined;

  /** `callers`: each principal's latest validated token, for upstreams that exchange it (src/upstream/token-exchange.ts). */
  constructor(server: ServerConfig, events: UpstreamEvents, tracer?: ExchangeTracer, callers?: CallerTokens) {
    this.#server = server;
    this.#events = events;
    this.#tracer = tracer;
    this.#replicas = server.upstreams.map((u) => new HttpReplica(u as HttpUpstreamConfig, server, callers));
    for (const r of this.#replicas) this.#byKey.set(r.key, r);
    // Session ids sealed before replicas were keyed by name hold the URL; they still route.
    for (const r of this.#replicas) if (!this.#byKey.has(r.url)) this.#byKey.set(r.url, r);
    if (server.probe) for (const r of this.#replicas) this.#probes.push(this.#startProbe(r, server.probe));
  }

  async initialize(req: ClientRequest, _sessionId: string, holder: string): Promise<{ response: UpstreamResponse; placement: SessionPlacement }> {
    // Nothing exists upstream before initialize answers, so a replica that cannot be reached (or
    // is overloaded) is skipped and the next least-loaded one tried.
    const { replica, res } = await this.#sendAnywhere((r) => this.#headers(r, req, ''), req.body, isOverloaded, { headers: req.headers, principal: holder }, undefined, req);
    const upstreamSession = headerValue(res.headers['mcp-session-id']);
    return {
      response: this.#relay(replica, res, 'POST', true),
      placement: { upstream: replica.key, upstreamSession, node: '' },
    };
  }

  async post(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse> {
    const replica = this.#sessionReplica(claims);
    const res = await this.#sessionSend(replica, 'POST', this.#headers(replica, req, claims.upstreamSession), req.body, { headers: req.headers, principal: claims.principal }, req.expiry, req);
    return this.#relay(replica, res, 'POST', holdsRequest(req.messages));
  }

  async get(claims: SessionClaims, req: ClientRequest, lastEventId?: string): Promise<UpstreamResponse> {
    const replica = this.#sessionReplica(claims);
    const headers = this.#headers(replica, req, claims.upstreamSession, false);
    headers.accept = 'text/event-stream';
    // The client's own Last-Event-ID names a gateway event; the upstream's comes from the event log.
    if (lastEventId) headers['last-event-id'] = lastEventId;
    const res = await this.#sessionSend(replica, 'GET', headers, undefined, { headers: req.headers, principal: claims.principal });
    return this.#relay(replica, res, 'GET');
  }

  async delete(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse> {
    const replica = this.#byKey.get(claims.upstream);
    if (!replica) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND');
    const headers = this.#headers(replica, req, claims.upstreamSession, false);
    const res = await this.#sessionSend(replica, 'DELETE', headers, undefined, { headers: req.headers, principal: claims.principal });
    return this.#relay(replica, res, 'DELETE');
  }

  // stateless: revision 2026-07-28 has no sessions; each request is balanced on its own, and
  // retried on the next replica only when nothing can have run: unreachable, or 503.
  async exchange(req: ClientRequest, signal?: AbortSignal): Promise<UpstreamResponse> {
    // The mirrored Mcp-Method and Mcp-Name are written from the message sent (which may carry a
    // stand-in name, src/auth/guard.ts), not copied from the client; so are the Mcp-Param-* of a
    // tools/call once its tool's marks are known (src/upstream/param-marks.ts). Otherwise the
    // client's go on only when well-formed, and the upstream checks them against the body as the
    // revision requires. Every tools/list answer is read for the marks as it passes.
    const m = req.messages[0];
    // The list is read for every caller waiting on it, not cut when this one gives up: each page
    // has its own time, the server's requestTimeout.
    const params = await this.#marks.headersFor(req, (list) => this.#exchange(list, {}, AbortSignal.timeout(this.#server.requestTimeoutMs)));
    const res = await this.#exchange(req, params, signal);
    if (m?.method === 'tools/call' && res.status === 400) this.#marks.refused(m, params);
    return m?.method === 'tools/list' && m.kind === 'request' ? this.#marks.watch(res, m.id) : res;
  }

  async #exchange(req: ClientRequest, params: Readonly<Record<string, string>>, signal: AbortSignal | undefined): Promise<UpstreamResponse> {
    const m = req.messages[0];
    const mirrored = m?.method === undefined ? {} : standardHeaders(m.method, m.params);
    const headersFor = (replica: HttpReplica) => Object.assign(this.#headers(replica, req, ''), params, mirrored);
    const { replica, res } = await this.#sendAnywhere(headersFor, req.body, (status) => status === 503, { headers: req.headers, principal: req.principal ?? '' }, signal, req);
    if (isOverloaded(res.statusCode)) this.#failed(replica, `HTTP ${res.statusCode}`);
    return this.#relay(replica, res, 'POST', holdsRequest(req.messages));
  }

  /** Sends to the least-loaded replica, then the next one while a replica is unreachable or answers a status `retry` names. */
  async #sendAnywhere(headersFor: (replica: HttpReplica) => Record<string, string>, body: Buffer | undefined, retry: (status: number) => boolean, onBehalfOf: OnBehalfOf, signal: AbortSignal | undefined, sent: SentMessages): Promise<{ replica: HttpReplica; res: Dispatcher.ResponseData }> {
    const tried = new Set<string>();
    // Why the last replica tried did not take the request (none of them ran it): the retry stage
    // reads it as transient (src/resilience/retry.ts).
    let refused: unknown;
    for (;;) {
      const replica = pickLeastLoaded(this.#replicas, Date.now(), tried);
      if (!replica) {
        throw new GatewayError(tried.size ? 'MCPGW_ERR_UPSTREAM_UNAVAILABLE' : 'MCPGW_ERR_NO_HEALTHY_UPSTREAM', `server "${this.#server.name}"`, { cause: refused });
      }
      tried.add(replica.key);
      let res: Dispatcher.ResponseData;
      try {
        res = await this.#send(replica, 'POST', headersFor(replica), body, onBehalfOf, signal, sent);
      } catch (err) {
        if (isUnreachable(err)) {
          refused = err;
          continue;
        }
        throw upstreamError(err, this.#server.name);
      }
      if (retry(res.statusCode)) {
        this.#failed(replica, `HTTP ${res.statusCode}`);
        this.#unrelayed(replica, res);
        refused = Object.assign(new Error(`HTTP ${res.statusCode}`), { code: NOT_TAKEN });
        continue;
      }
      return { replica, res };
    }
  }

  health(): UpstreamHealth {
    return anyAvailable(this.#replicas) ? 'up' : 'no_healthy_upstream';
  }

  replicaStates(): readonly ReplicaSnapshot[] {
    return this.#replicas.map((r) => r.snapshot());
  }

  async close(): Promise<void> {
    for (const t of this.#probes) clearInterval(t);
    await Promise.all(this.#replicas.map((r) => r.destroy()));
  }

  #sessionReplica(claims: SessionClaims): HttpReplica {
    const replica = this.#byKey.get(claims.upstream);
    // A session pinned to a replica that is gone or ejected cannot be served anywhere else:
    // 404 tells the client to initialize again (the spec's session-expired path).
    if (!replica || replica.ejected) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'its upstream replica is unavailable');
    return replica;
  }

  async #sessionSend(replica: HttpReplica, method: 'POST' | 'GET' | 'DELETE', headers: Record<string, string>, body: Buffer | undefined, onBehalfOf: OnBehalfOf, signal?: Stop, sent: SentMessages = NOTHING_SENT): Promise<Dispatcher.ResponseData> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#send(replica, method, headers, body, onBehalfOf, signal, sent);
    } catch (err) {
      if (isUnreachable(err)) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'its upstream replica is unreachable', { cause: err });
      throw upstreamError(err, this.#server.name);
    }
    if (res.statusCode === 404) {
      this.#unrelayed(replica, res);
      throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'the upstream ended it');
    }
    if (isOverloaded(res.statusCode)) this.#failed(replica, `HTTP ${res.statusCode}`);
    return res;
  }

  async #send(replica: HttpReplica, method: 'POST' | 'GET' | 'DELETE', headers: Record<string, string>, body: Buffer | undefined, onBehalfOf: OnBehalfOf, signal: Stop | undefined, sent: SentMessages): Promise<Dispatcher.ResponseData> {
    const started = performance.now();
    // traces: a client span per request to a replica (each try of a retry its own), its trace
    // context in the W3C headers; it ends with the response body.
    const span = this.#tracer?.exchange(this.#server.name, replica.key, 'http', method, sent.messages, sent.resendCount);
    if (span) Object.assign(headers, span.context);
    replica.inflight++;
    try {
      // auth: the gateway's own credentials, or a token exchanged for this request's caller; never the caller's own.
      if (replica.credentials) headers[replica.credentials.header] = await replica.credentials.value(onBehalfOf);
      // An Expiry is what undici takes as an EventEmitter signal (its on/once/removeListener of 'abort').
      const res = await replica.request({ path: replica.path, method, headers, body, headersTimeout: this.#server.requestTimeoutMs, signal: signal as Dispatcher.RequestOptions['signal'] }, this.#server.requestTimeoutMs, this.#server.name);
      if (!isOverloaded(res.statusCode)) replica.succeed(performance.now() - started);
      if (res.statusCode === 401 && replica.credentials) {
        // The gateway's own credential was refused, not the caller's: a fresh one next time.
        drain(res.body);
        replica.credentials.invalidate(onBehalfOf);
        throw new GatewayError('MCPGW_ERR_UPSTREAM_CREDENTIALS', 'the upstream refused the gateway credentials (HTTP 401)');
      }
      if (span) endWithBody(span, res.body, res.statusCode);
      return res;
    } catch (err) {
      span?.end(errorCode(err) ?? errorType(err));
      replica.inflight--;
      if (isUnreachable(err) || isTimeout(err)) this.#failed(replica, errorCode(err) ?? 'error');
      throw err;
    }
  }

  /**
   * An answer #send got that goes no further (refused, or the session is gone upstream): its body
   * is drained and the replica's load for it given back (else #relay gives it back at the body's end).
   */
  #unrelayed(replica: HttpReplica, res: Dispatcher.ResponseData): void {
    replica.inflight--;
    drain(res.body);
  }

  /**
   * Streams the upstream response through; the replica's load drops when the body is done.
   * `asked`: the POST holds a request, so it must be answered in JSON or SSE.
   */
  #relay(replica: HttpReplica, res: Dispatcher.ResponseData, method: 'POST' | 'GET' | 'DELETE', asked = false): UpstreamResponse {
    const contentType = headerValue(res.headers['content-type']);
    const isSse = contentType.startsWith('text/event-stream');
    const body: Readable = res.body;
    if (isSse) {
      replica.inflight--;
      replica.streams++;
    }
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (isSse) replica.streams--;
      else replica.inflight--;
    };
    // Each comes at most once: `on` spares the wrappers `once` would allocate per request.
    body.on('close', release);
    body.on('end', release);
    body.on('error', release);
    if (res.statusCode === 202 || res.statusCode === 204 || method0(res)) {
      drain(body);
      // The answer to notifications and responses only: a request's is JSON or SSE (the spec's
      // MUST), else its client would wait for an answer that never comes.
      if (asked) throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `HTTP ${res.statusCode} without a body to a request`);
      return { status: res.statusCode, headers: {}, body: null };
    }
    if (method === 'POST' && res.statusCode >= 200 && res.statusCode < 300 && !isSse && !contentType.startsWith('application/json')) {
      discard(body);
      throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `content-type "${contentType}" is neither application/json nor text/event-stream`);
    }
    // A JSON answer not whole within requestTimeout of its headers is ended (SSE streams may idle
    // for long: their limits are the event log's and the request's).
    if (!isSse) bodyTimeLimit(body, this.#server.requestTimeoutMs, this.#server.name);
    const headers: Record<string, string> = isSse ? { ...SSE_HEADERS } : {};
    if (contentType) headers['content-type'] = contentType;
    const length = headerValue(res.headers['content-length']);
    if (length && !isSse) headers['content-length'] = length;
    const allow = headerValue(res.headers.allow);
    if (allow) headers.allow = allow;
    return { status: res.statusCode, headers, body };
  }

  /** `withBody` false (a GET, a DELETE): no content-type (left out rather than deleted after: a deleted key turns the object into a slow dictionary). */
  #headers(replica: HttpReplica, req: ClientRequest, upstreamSession: string, withBody = true): Record<string, string> {
    // Built from scratch: nothing of the client's reaches the upstream unless named here, so its
    // Authorization and cookies never do (no token passthrough).
    const h: Record<string, string> = { ...replica.headers };
    if (withBody) h['content-type'] = 'application/json';
    else if (h['content-type'] !== undefined) delete h['content-type'];
    // The gateway reads either form (and answers the client in the one it accepts); an
    // upstream may refuse a request that does not offer both (the spec's MUST for clients).
    h.accept = 'application/json, text/event-stream';
    if (upstreamSession) h['mcp-session-id'] = upstreamSession;
    // Only a revision the gateway knows (the front door refused any other).
    const version = headerValue(req.headers['mcp-protocol-version']);
    if (version && (isSessionRevision(version) || version === STATELESS_REVISION)) h['mcp-protocol-version'] = version;
    return h;
  }

  #failed(replica: HttpReplica, reason: string): void {
    if (replica.fail(Date.now())) this.#events.emit('eject', { server: this.#server.name, replica: replica.key, reason });
  }

  #startProbe(replica: HttpReplica, probe: NonNullable<ServerConfig['probe']>): NodeJS.Timeout {
    const timer = setInterval(() => {
      replica.pool
        .request({ path: probe.path ?? replica.path, method: 'GET', headers: { ...replica.headers, accept: 'text/event-stream' }, headersTimeout: probe.timeoutMs })
        .then((res) => {
          // Only the status matters; the body is dropped unread.
          discard(res.body);
          if (res.statusCode >= 500) return this.#failed(replica, `probe HTTP ${res.statusCode}`);
          if (replica.ejected) {
            replica.ejectedUntil = 0;
            this.#events.emit('restore', { server: this.#server.name, replica: replica.key });
          }
          replica.succeed();
        })
        .catch((err: unknown) => this.#failed(replica, `probe ${errorCode(err) ?? 'error'}`));
    }, probe.intervalMs);
    timer.unref();
    return timer;
  }
}

/**
 * Destroys `body` with MCPGW_ERR_UPSTREAM_TIMEOUT when it is not whole within `ms`. (No 'data'
 * listener: that would start the body flowing before its reader is there.)
 */
function bodyTimeLimit(body: Readable, ms: number, server: string): void {
  const timer = setTimeout(() => body.destroy(new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `server "${server}": the answer was not whole within requestTimeout`)), ms);
  timer.unref();
  body.once('close', () => clearTimeout(timer));
}

function method0(res: Dispatcher.ResponseData): boolean {
  // A bodiless success answers a notification or response: nothing to stream back.
  return res.statusCode >= 200 && res.statusCode < 300 && headerValue(res.headers['content-length']) === '0';
}

function isOverloaded(status: number): boolean {
  return status === 502 || status === 503 || status === 504;
}

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } };
  if (typeof e?.code === 'string' && e.code !== 'UND_ERR_SOCKET') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return typeof e?.code === 'string' ? e.code : undefined;
}

export function isUnreachable(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && UNREACHABLE.has(code);
}

function isTimeout(err: unknown): boolean {
  return errorCode(err) === 'UND_ERR_HEADERS_TIMEOUT';
}

export function upstreamError(err: unknown, server: string): GatewayError {
  if (err instanceof GatewayError) return err;
  if (isTimeout(err)) return new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `server "${server}"`, { cause: err });
  return new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', `server "${server}": ${errorCode(err) ?? 'connection failed'}`, { cause: err });
}

/** What ends a request to a replica early: a request's time limit, or (2026-07-28) the caller's cancellation too. */
type Stop = Expiry | AbortSignal;

/** What a request to a replica sent, as its span tells it (src/upstream/tracing.ts). */
type SentMessages = Pick<ClientRequest, 'messages' | 'resendCount'>;
const NOTHING_SENT: SentMessages = { messages: [] };

