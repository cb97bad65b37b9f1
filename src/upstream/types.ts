import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Envelope } from '../protocol/jsonrpc.ts';
import type { SessionClaims } from '../session/token.ts';

/** A client request as the upstream side needs it: headers, raw bytes, the parsed envelope. */
export interface ClientRequest {
  readonly headers: IncomingHttpHeaders;
  /** Raw POST body, forwarded byte for byte. */
  readonly body: Buffer | undefined;
  /** Parsed envelope(s) of a POST body. */
  readonly messages: readonly Envelope[];
  /** Revision from MCP-Protocol-Version (or the session's, or the spec default). */
  readonly protocolVersion: string;
  /** resilience: aborts a POST still waiting for its answer (the request timed out). */
  readonly signal?: AbortSignal | undefined;
}

/** What the HTTP layer writes back. A Readable body is streamed as it arrives, never buffered. */
export interface UpstreamResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Readable | string | null;
  /** resilience: told the key of the gateway stream when an SSE answer is relayed (src/resilience/calls.ts). */
  readonly onStream?: ((streamKey: string) => void) | undefined;
}

/** Where a new session lives; sealed into the gateway's session id. */
export interface SessionPlacement {
  readonly upstream: string;
  readonly upstreamSession: string;
  readonly node: string;
}

/** One upstream replica as readiness and metrics see it. */
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
  initialize(req: ClientRequest, sessionId: string): Promise<{ response: UpstreamResponse; placement: SessionPlacement }>;
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
  /** True when at least one replica can take new sessions. */
  healthy(): boolean;
  /** Per-replica state for readiness and metrics. */
  replicaStates(): readonly ReplicaSnapshot[];
  close(): Promise<void>;
}

export const SSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  // Tells nginx (and kin) not to buffer the stream.
  'x-accel-buffering': 'no',
});
