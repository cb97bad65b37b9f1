import { GATEWAY_ORIGINATED } from '../pipeline/admission.ts';
import { randomBytes } from 'node:crypto';
import { GatewayError, isCallersOwn } from '../errors.ts';
import { STATELESS_REVISION } from '../protocol/revisions.ts';
import { META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION, standardHeaders } from '../protocol/stateless.ts';
import type { GatewayConfig } from '../config/types.ts';
import type { IncomingHttpHeaders } from 'node:http';
import { forCaller, ownRequest, type ClientRequest, type Upstream, type UpstreamResponse } from '../upstream/types.ts';
import type { Message } from './messages.ts';
import { firstResponse, GATEWAY_INFO, SessionPool, sessionHeaders, UPSTREAM_REVISION, type PooledSession } from './session-pool.ts';
import { StateSealer } from './state.ts';

export type Era = 'session' | 'stateless';

/**
 * The most resources one `subscriptions/listen`, or one translated session, subscribes to: each
 * is a request of the gateway's own upstream (a `resources/subscribe` on a pooled session; a
 * listen reopened with all of them), so a client's one request must not turn into thousands.
 */
export const MAX_RESOURCE_SUBSCRIPTIONS = 256;

interface Verdict {
  readonly era: Era;
  readonly until: number;
  /** A 2026-07-28 upstream that also answers initialize (dual-era): session clients are forwarded to it. */
  readonly acceptsSessions: boolean;
}

/**
 * The request that made the gateway ask a server its era: its headers (with the front door's
 * validated token, if any) and its caller's principal. The probe goes out on that caller's behalf,
 * so an upstream that takes only exchanged tokens gets that caller's (src/upstream/credentials.ts).
 */
export interface ProbeCaller {
  readonly from: IncomingHttpHeaders;
  readonly principal: string;
}

/** A call held until the client answers its input requests; knows how to give up. */
export interface Parked {
  /** The server it was called on. */
  readonly server: string;
  expire(reason: string): void;
}

/** What a translated session (a session-era client of a 2026-07-28 upstream) keeps on this replica (best effort: another replica starts empty). */
export interface LocalSession {
  logLevel: string | undefined;
  readonly subscriptions: Set<string>;
  /** The client's requests in flight upstream, to cancel on notifications/cancelled. */
  readonly inflight: Map<string, AbortController>;
  /** Reopens the GET stream's upstream listen when the subscriptions change. */
  relisten: (() => void) | undefined;
  lastUsed: number;
}

/**
 * The `subscriptions/listen` streams of 2026-07-28 clients that ride one pooled session's GET
 * stream (its class: Fanout in src/translate/to-session.ts; a listener is that file's business).
 */
export interface SessionFanout {
  readonly listeners: Set<unknown>;
  open(): Promise<boolean>;
  subscribe(uris: readonly string[]): Promise<void>;
  add(listener: unknown): void;
  remove(listener: unknown): void;
  /** A reload retired its session: its listen streams end (their clients listen again, on the new pool). */
  handOver(): void;
}

/**
 * What translation between protocol eras keeps per gateway replica: the upstream sessions held
 * for 2026-07-28 clients and the listen streams on them, the calls parked until a client answers
 * an input request, the sealing key of `requestState`, each server's era, and what translated
 * sessions keep here. Made by the Gateway; the doors reach it as `gw.translator`.
 */
export class Translator {
  readonly node = randomBytes(6).toString('base64url');
  readonly pool: SessionPool;
  readonly sealer: StateSealer;
  /** Parked calls by id; each owns its expiry timer and its cleanup. */
  readonly parked = new Map<string, Parked>();
  readonly inputTimeoutMs: number;
  /** Translated sessions by id, least recently used first (src/translate/to-stateless.ts). */
  readonly locals = new Map<string, LocalSession>();
  /** Server→client requests pushed to a client of a translated session, by the id the gateway gave them. */
  readonly waiting = new Map<string, (m: Message) => void>();
  /** The listen fan-out of each pooled session (weak: it goes with its session). */
  readonly fanouts = new WeakMap<PooledSession, SessionFanout>();
  readonly #config: GatewayConfig;
  readonly #verdicts = new Map<string, Verdict>();
  /** The probe under way per server, and whose caller it went out for. */
  readonly #probes = new Map<string, { readonly verdict: Promise<Verdict>; readonly principal: string }>();
  #seq = 0;

  constructor(config: GatewayConfig) {
    this.#config = config;
    const t = config.translation;
    this.pool = new SessionPool({ maxSessions: t.maxSessions, perCaller: t.sessionsPerCaller, idleMs: t.sessionIdleMs });
    // Without a shared secret, state sealed here opens only here, like the calls it names.
    this.sealer = new StateSealer(config.session.secret ?? randomBytes(32));
    this.inputTimeoutMs = t.inputTimeoutMs;
  }

  /** A JSON-RPC id no other request on a shared upstream session has. */
  nextId(): string {
    return `mcpgw-${this.node}-${++this.#seq}`;
  }

  /**
   * The protocol era `server` speaks: configured, or asked (server/discover) and remembered a
   * while; asked on behalf of `caller`, the one whose request needs to know.
   */
  async era(server: string, upstream: Upstream, caller?: ProbeCaller): Promise<Era> {
    return (await this.#verdict(server, upstream, caller)).era;
  }

  /** For session-era clients: translate to a 2026-07-28-only upstream instead of forwarding initialize. */
  async translatesSessions(server: string, upstream: Upstream, caller?: ProbeCaller): Promise<boolean> {
    // An upstream that cannot be asked now is forwarded initialize as before; it answers for itself.
    const v = await this.#verdict(server, upstream, caller).catch(() => undefined);
    return v?.era === 'stateless' && !v.acceptsSessions;
  }

  /**
   * A reload replaced or removed these servers' upstreams (or changed their `era`): what was
   * learnt of the era they speak is the old upstream's, and so are the upstream sessions held for
   * their 2026-07-28 clients. The next call asks again (a probe still under way is not kept when
   * it answers) and opens a session on the new upstream. The old sessions' listen streams are
   * handed over at once (they would hold the old pool), and each old session is ended upstream
   * once unused: resolves when they all are.
   */
  forget(servers: readonly string[]): Promise<void> {
    for (const server of servers) {
      this.#verdicts.delete(server);
      this.#probes.delete(server);
    }
    return this.pool.retire(servers, (session) => this.fanouts.get(session)?.handOver());
  }

  /**
   * A reload removed these servers: a call parked on one can never be retried (the server is
   * unknown now), so it is cancelled upstream at once instead of at translation.inputTimeout,
   * giving back what it holds (its session, its concurrency slot).
   */
  endParked(servers: readonly string[]): void {
    if (servers.length === 0) return;
    for (const p of [...this.parked.values()]) if (servers.includes(p.server)) p.expire('the server was removed from the gateway');
  }

  /** Ends what it holds: the parked calls, the upstream sessions. */
  async close(): Promise<void> {
    for (const p of [...this.parked.values()]) p.expire('the gateway is shutting down');
    await this.pool.close();
  }

  async #verdict(server: string, upstream: Upstream, caller: ProbeCaller | undefined): Promise<Verdict> {
    const configured = this.#config.servers[server]?.era ?? 'auto';
    if (configured !== 'auto' || !upstream.exchange) return { era: configured === 'auto' ? 'session' : configured, until: Infinity, acceptsSessions: configured !== 'stateless' };
    const known = this.#verdicts.get(server);
    if (known && known.until > Date.now()) return known;
    const principal = caller?.principal ?? '';
    const under = this.#probes.get(server);
    if (under) {
      // The era is the server's, whoever asked; but another caller's refused token exchange, or
      // the upstream turning that caller away, is not this caller's answer: it asks again for itself.
      if (under.principal === principal) return under.verdict;
      return under.verdict.catch((err: unknown) => {
        if (isCallersOwn(err)) return this.#start(server, upstream, caller);
        throw err;
      });
    }
    return this.#start(server, upstream, caller);
  }

  #start(server: string, upstream: Upstream, caller: ProbeCaller | undefined): Promise<Verdict> {
    const verdict: Promise<Verdict> = this.#probe(upstream, caller).then(({ era, acceptsSessions }) => {
      const v: Verdict = { era, until: Date.now() + this.#config.translation.eraProbeTtlMs, acceptsSessions };
      // Forgotten meanwhile (a reload replaced the upstream): the answer is the old upstream's.
      if (this.#probes.get(server)?.verdict === verdict) this.#verdicts.set(server, v);
      return v;
    });
    const entry = { verdict, principal: caller?.principal ?? '' };
    this.#probes.set(server, entry);
    void verdict.finally(() => this.#probes.get(server) === entry && this.#probes.delete(server)).catch(() => {});
    return verdict;
  }

  /**
   * server/discover answered with 2026-07-28 among its versions means the stateless era; anything
   * else, the session era. A stateless upstream is then asked whether it also answers initialize.
   */
  async #probe(upstream: Upstream, caller: ProbeCaller | undefined): Promise<{ era: Era; acceptsSessions: boolean }> {
    // For the caller whose request asked (an upstream that exchanges tokens gets theirs, exchanged).
    const behalf = (req: ClientRequest) => forCaller(req, caller?.from, caller?.principal ?? '');
    const discovered = await firstResponse(answering(await upstream.exchange!(behalf(discoverRequest({}, GATEWAY_INFO)))));
    const versions = discovered?.result?.supportedVersions;
    if (!Array.isArray(versions) || !versions.includes(STATELESS_REVISION)) return { era: 'session', acceptsSessions: true };
    const init: Message = { jsonrpc: '2.0', id: 'mcpgw-probe', method: 'initialize', params: { protocolVersion: UPSTREAM_REVISION, capabilities: {}, clientInfo: GATEWAY_INFO } };
    const res = answering(await upstream.exchange!(behalf(ownRequest(sessionHeaders(), init, UPSTREAM_REVISION, GATEWAY_ORIGINATED))));
    const answered = res.status >= 200 && res.status < 300 ? await firstResponse(res) : (release(res), undefined);
    return { era: 'stateless', acceptsSessions: answered?.result !== undefined };
  }
}

/** A server/discover request of the gateway's own, as a 2026-07-28 client sends it. */
export function discoverRequest(capabilities: Record<string, unknown>, clientInfo: Record<string, unknown>, id: string = 'mcpgw-discover'): ClientRequest {
  const params = { _meta: { [META_PROTOCOL_VERSION]: STATELESS_REVISION, [META_CLIENT_CAPABILITIES]: capabilities, [META_CLIENT_INFO]: clientInfo } };
  const message: Message = { jsonrpc: '2.0', id, method: 'server/discover', params };
  return ownRequest({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...standardHeaders('server/discover', params) }, message, STATELESS_REVISION, GATEWAY_ORIGINATED);
}

/**
 * Statuses that say nothing of an upstream's era: the caller turned away (403), or no answer now
 * (429, a proxy's 502 / 504; 503 is tried on the other replicas). A session-era server may answer
 * a request it does not know with any other status, a 500 included.
 */
const UNDECIDED = new Set([403, 429, 502, 504]);

/**
 * A probe's answer that says something of the upstream's era. Another one fails the probe (that
 * caller's request with it) and nothing is remembered, so one refused caller does not set every
 * caller's era.
 */
function answering(res: UpstreamResponse): UpstreamResponse {
  if (!UNDECIDED.has(res.status)) return res;
  release(res);
  if (res.status === 403) throw new GatewayError('MCPGW_ERR_FORBIDDEN', 'the upstream turned the caller away (HTTP 403)');
  throw new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', `the upstream could not say which revision it speaks (HTTP ${res.status})`);
}

function release(res: { body: unknown }): void {
  const body = res.body as { resume?: () => void } | null;
  if (body && typeof body === 'object' && typeof body.resume === 'function') body.resume();
}

export function requireObject(v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', `${what} must be an object`);
  return v as Record<string, unknown>;
}
