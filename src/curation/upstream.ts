import type { ServerConfig } from '../config/types.ts';
import type { SessionClaims } from '../session/token.ts';
import { rewriteAnswer, withMessages } from '../upstream/rewrite.ts';
import type { ClientRequest, ReplicaSnapshot, SessionPlacement, Upstream, UpstreamHealth, UpstreamResponse } from '../upstream/types.ts';
import { Curation } from './curation.ts';

/**
 * A server's upstream as curation publishes it: every request in the upstream's terms, every
 * answer in the published ones. It wraps the upstream (as undici's RetryAgent wraps a
 * dispatcher), so every front door, the translators, compose, the cache and the tool hints above
 * it see the published view only, whoever calls and whether or not auth is on.
 */
export class CuratedUpstream implements Upstream {
  readonly inner: Upstream;
  readonly kind: Upstream['kind'];
  readonly exchange?: (req: ClientRequest, signal?: AbortSignal) => Promise<UpstreamResponse>;
  readonly #curation: Curation;

  constructor(inner: Upstream, curation: Curation) {
    this.inner = inner;
    this.kind = inner.kind;
    this.#curation = curation;
    // Only HTTP upstreams have it (its absence tells the translators the upstream's era).
    if (inner.exchange) this.exchange = (req, signal) => this.#send(req, (r) => inner.exchange!(withArgumentsWritten(req, r), signal));
  }

  initialize(req: ClientRequest, sessionId: string, holder: string): Promise<{ response: UpstreamResponse; placement: SessionPlacement }> {
    return this.inner.initialize(req, sessionId, holder);
  }

  post(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse> {
    return this.#send(req, (r) => this.inner.post(claims, r));
  }

  async get(claims: SessionClaims, req: ClientRequest, lastEventId?: string): Promise<UpstreamResponse> {
    const res = await this.inner.get(claims, req, lastEventId);
    // A stream read again may hold list answers, to requests no longer known here.
    return lastEventId === undefined ? res : rewriteAnswer(res, this.#curation.resumed);
  }

  delete(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse> {
    return this.inner.delete(claims, req);
  }

  health(): UpstreamHealth {
    return this.inner.health();
  }

  replicaStates(): readonly ReplicaSnapshot[] {
    return this.inner.replicaStates();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  async #send(req: ClientRequest, send: (req: ClientRequest) => Promise<UpstreamResponse>): Promise<UpstreamResponse> {
    const plan = this.#curation.plan(req.messages);
    if (!plan) return send(req);
    const res = await send(plan.messages === req.messages ? req : withMessages(req, plan.messages));
    return rewriteAnswer(res, plan);
  }
}

/**
 * `sent` (the caller's request `req` in the upstream's terms), told when curation set arguments
 * of its tools/call: the caller's Mcp-Param-* headers do not speak of them, the upstream gets
 * the ones written from the arguments sent (src/upstream/param-marks.ts).
 */
function withArgumentsWritten(req: ClientRequest, sent: ClientRequest): ClientRequest {
  const m = sent.messages.length === 1 ? sent.messages[0]! : undefined;
  return m?.method === 'tools/call' && m.params?.arguments !== req.messages[0]?.params?.arguments ? { ...sent, argumentsWritten: true } : sent;
}

/** The upstream itself under its curation, if any (for what only a concrete upstream has). */
export function bare(upstream: Upstream): Upstream {
  return upstream instanceof CuratedUpstream ? upstream.inner : upstream;
}

/** The server's upstream as published: under its curation when it has one, else itself. */
export function curated(server: ServerConfig, upstream: Upstream): Upstream {
  return server.curation ? new CuratedUpstream(upstream, new Curation(server.curation)) : upstream;
}
