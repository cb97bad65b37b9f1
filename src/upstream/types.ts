import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { envelope, type Envelope } from '../protocol/jsonrpc.ts';
import { wireBody, type WireBody } from '../protocol/wire.ts';
import type { SessionClaims } from '../session/token.ts';
import { callerTokenOf, stampCallerToken } from './token-exchange.ts';
// The pipeline's token (src/pipeline/admission.ts): a type only, the contract between the stages and an upstream.
import type { Admission } from '../pipeline/admission.ts';

/** A client request as the upstream side needs it: headers, the checked messages, the body written from them. */
export interface ClientRequest {
  /**
   * The client's headers; an upstream transport copies none of them but what it checks
   * (src/upstream/http.ts builds its headers from scratch).
   */
  readonly headers: IncomingHttpHeaders;
  /** The body the gateway wrote from `messages` (never the caller's bytes); undefined for GET and DELETE. */
  readonly body: WireBody | undefined;
  /** The checked messages of a POST body. */
  readonly messages: readonly Envelope[];
  /** Revision from MCP-Protocol-Version (or the session's, or the spec default). */
  readonly protocolVersion: string;
  /** pipeline: ends a request still waiting for its answer (its time limit, src/pipeline/deadline.ts). */
  readonly expiry?: Expiry | undefined;
  /**
   * pipeline: why this may reach an upstream — a caller's messages passed the chain
   * (`Admitted`, minted only by src/pipeline/pipeline.ts), or the gateway wrote them itself (`GATEWAY_ORIGINATED`).
   */
  readonly admission: Admission;
  /**
   * pipeline: how many times the retry stage sent this request before (src/pipeline/retry.ts);
   * undefined for a first try. traces: the exchange span's `http.request.resend_count`.
   */
  readonly resendCount?: number | undefined;
  /**
   * auth: whose request a message the gateway writes itself is (a session's principal): an
   * upstream that exchanges callers' tokens uses the validated token the request carries, else
   * that principal's latest (src/upstream/credentials.ts). Unset for a caller's own request.
   */
  readonly principal?: string | undefined;
  /**
   * stateless: a tools/call whose arguments the gateway wrote (a session-era client's call
   * translated, curation's fixed arguments and defaults): the caller's Mcp-Param-* headers, if
   * any, do not speak of them, so none is sent; the upstream's marks are looked up when unknown
   * and the headers written from the arguments (src/upstream/param-marks.ts).
   */
  readonly argumentsWritten?: boolean | undefined;
}

/**
 * A request's time limit as the upstream side sees it (made by src/pipeline/deadline.ts):
 * whether and why it expired, an AbortSignal for what takes one (made when first asked for),
 * and itself in the shape undici takes as a request's `signal` — an EventEmitter's `on`/`once`/
 * `removeListener` of 'abort'. An AbortSignal handed to undici costs an EventTarget listener
 * added and removed on every request (≈ 3.6 KB and a sixth of the gateway's CPU per call, in
 * bench/alloc.ts and the bench); this costs an array slot.
 */
export interface Expiry {
  readonly aborted: boolean;
  /** Why: the MCPGW_ERR_UPSTREAM_TIMEOUT error; undefined while the time is not up. */
  readonly reason: Error | undefined;
  readonly signal: AbortSignal;
  on(event: 'abort', listener: () => void): this;
  once(event: 'abort', listener: () => void): this;
  removeListener(event: 'abort', listener: () => void): this;
}

/** A request for an upstream: the body is written from the messages, so the two cannot disagree. */
export function clientRequest(headers: IncomingHttpHeaders, messages: readonly Envelope[], batch: boolean, protocolVersion: string, admission: Admission, expiry?: Expiry): ClientRequest {
  return { headers, body: messages.length > 0 ? wireBody(messages, batch) : undefined, messages, protocolVersion, expiry, admission };
}

/**
 * A request carrying one message the gateway wrote (checked like a caller's: it must be a
 * JSON-RPC message): its own (`GATEWAY_ORIGINATED`), or a caller's translated (its `Admitted`).
 */
export function ownRequest(headers: IncomingHttpHeaders, message: Readonly<Record<string, unknown>>, protocolVersion: string, admission: Admission): ClientRequest {
  return clientRequest(headers, [envelope(message)], false, protocolVersion, admission);
}

/**
 * `req` (one the gateway wrote, on fresh headers) sent on behalf of the caller of the request
 * whose headers are `from`: that request's validated token goes with it (the symbol the front
 * door stamped, never a header on the wire: src/upstream/token-exchange.ts), and `principal`
 * names whose latest token to use when there is none (what the gateway sends later on its own).
 */
export function forCaller(req: ClientRequest, from: IncomingHttpHeaders | undefined, principal: string): ClientRequest {
  const caller = from && callerTokenOf(from);
  if (caller) stampCallerToken(req.headers, caller);
  return principal ? { ...req, principal } : req;
}

/** What the HTTP layer writes back. A Readable body is streamed as it arrives, never buffered. */
export interface UpstreamResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Readable | string | null;
  /** pipeline: told the key of the gateway stream when an SSE answer is relayed (src/pipeline/deadline.ts). */
  readonly onStream?: ((streamKey: string) => void) | undefined;
  /**
   * pipeline: told of an SSE answer's events by the one that reads them for the client (the
   * event hub's producer, src/events/producer.ts), so no one parses them a second time.
   */
  readonly events?: EventTap | undefined;
}

/** What the reader of a relayed SSE answer tells the request's time limit (src/pipeline/deadline.ts). */
export interface EventTap {
  /** An event with data passed: activity. */
  event(): void;
  /** A response to request `id` passed. */
  answered(id: unknown): void;
  /** The stream is over: answered, cut, or given up. */
  ended(): void;
}

/** Where a new session lives; sealed into the gateway's session id. */
export interface SessionPlacement {
  readonly upstream: string;
  readonly upstreamSession: string;
  readonly node: string;
}

/**
 * Whether a server can open a new session now: `up`; `no_healthy_upstream` (every replica is
 * ejected, or the pool is closing); `at_capacity` (a stdio server runs `maxProcesses` children).
 * A server's health never decides the gateway replica's readiness: it goes to the per-server
 * view, metrics and logs (src/ops/health.ts).
 */
export type UpstreamHealth = 'up' | 'no_healthy_upstream' | 'at_capacity';

/** One upstream replica as the health view and metrics see it. */
export interface ReplicaSnapshot {
  /** Its public name (ReplicaState.key): never a URL's userinfo or query. */
  readonly key: string;
  readonly inflight: number;
  readonly streams: number;
  readonly load: number;
  readonly ejected: boolean;
  /** The replica's circuit breaker (ReplicaState.breaker): open while ejected, half-open on trial after it. */
  readonly breaker: 'closed' | 'half-open' | 'open';
}

/** One published server's upstream side: a pool of Streamable HTTP replicas or stdio children. */
export interface Upstream {
  // legacy: `sse` (src/upstream/sse.ts); compose: `virtual` (src/upstream/compose.ts).
  readonly kind: 'http' | 'stdio' | 'sse' | 'virtual';
  /**
   * Opens an upstream session. `holder` names the caller it is opened for (its principal, or its
   * address when auth is off): what the gateway holds per session itself (a stdio child, a
   * 2024-11-05 SSE connection) is capped per holder (`maxSessionsPerCaller`).
   */
  initialize(req: ClientRequest, sessionId: string, holder: string): Promise<{ response: UpstreamResponse; placement: SessionPlacement }>;
  post(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse>;
  /** Opens the standalone stream; with `lastEventId` (the upstream's), resumes one of its streams. */
  get(claims: SessionClaims, req: ClientRequest, lastEventId?: string): Promise<UpstreamResponse>;
  delete(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse>;
  /**
   * stateless: one 2026-07-28 request, sent to whichever replica is least loaded now (no session
   * pins it); aborting `signal` cancels it (closing the upstream response is cancellation in that
   * revision). Only HTTP upstreams have it.
   */
  exchange?(req: ClientRequest, signal?: AbortSignal): Promise<UpstreamResponse>;
  /** Whether a new session can be opened now (see UpstreamHealth). */
  health(): UpstreamHealth;
  /** Per-replica state for the health view and metrics. */
  replicaStates(): readonly ReplicaSnapshot[];
  close(): Promise<void>;
}

export const SSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  // Tells nginx (and kin) not to buffer the stream.
  'x-accel-buffering': 'no',
});
