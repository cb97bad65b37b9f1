import { GATEWAY_ORIGINATED, type Admission } from '../pipeline/admission.ts';
import { createHash } from 'node:crypto';
import { stampPrincipal, type StampedCaller } from '../auth/principal.ts';
import { GatewayError } from '../errors.ts';
import { SessionSealer, type SessionClaims } from '../session/token.ts';
import { ownRequest, type ClientRequest, type Upstream, type UpstreamResponse } from '../upstream/types.ts';
import { MessageReader, type Message } from './messages.ts';
import { drain } from '../upstream/body.ts';

/** The session-era revision the gateway asks for when it opens an upstream session itself. */
export const UPSTREAM_REVISION = '2025-11-25';
export const GATEWAY_INFO = { name: 'mcp-gateway', version: '0.1.0' } as const;

/** One upstream session the gateway holds for 2026-07-28 clients of a session-era server. */
export interface PooledSession {
  readonly key: string;
  readonly server: string;
  readonly upstream: Upstream;
  readonly claims: SessionClaims;
  /** What the upstream answered to initialize. */
  readonly protocolVersion: string;
  readonly capabilities: Record<string, unknown>;
  readonly serverInfo: Record<string, unknown> | undefined;
  readonly instructions: string | undefined;
  /** The capabilities it was opened with: the client's, so the upstream asks only for what the client can give. */
  readonly clientCapabilities: Record<string, unknown>;
  lastUsed: number;
  /** Calls and listen streams using it now; an idle sweep skips a busy session. */
  busy: number;
  /** Ended (expired upstream, evicted, gateway closing): the next caller opens a new one. */
  dead: boolean;
}

export interface PoolOptions {
  readonly maxSessions: number;
  /** Sessions one principal may have at once (one per set of client capabilities it declared). */
  readonly perCaller: number;
  readonly idleMs: number;
}

/**
 * Upstream sessions per (server, principal — with auth off, the client's address —, client
 * capabilities), reused by every stateless request that matches: the upstream sees a session-era
 * client whose capabilities are exactly the 2026-07-28 client's. Least recently used sessions are ended past `maxSessions`, idle ones after
 * `idleMs`; one the upstream has forgotten (404) is opened again on the next use. A principal
 * declaring ever new capabilities only ever replaces its own sessions past `perCaller`, never
 * anyone else's.
 */
export class SessionPool {
  readonly #opts: PoolOptions;
  readonly #entries = new Map<string, Promise<PooledSession>>();
  /** Keys of the entries per (server, principal or address), least recently opened first. */
  readonly #byCaller = new Map<string, Set<string>>();
  readonly #sweeper: NodeJS.Timeout;
  /** Retired sessions still in use, each with what to tell once it is ended (when its last user lets go: see retire). */
  readonly #retiring = new Map<PooledSession, () => void>();

  constructor(opts: PoolOptions) {
    this.#opts = opts;
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(1_000, Math.min(60_000, Math.floor(opts.idleMs / 4))));
    this.#sweeper.unref();
  }

  get size(): number {
    return this.#entries.size;
  }

  acquire(server: string, upstream: Upstream, principal: string, holder: string, capabilities: Record<string, unknown>, clientInfo: Record<string, unknown> | undefined, checked?: StampedCaller): Promise<PooledSession> {
    // With auth off there is no principal: the caller is its address (the holder), so one client
    // declaring ever new capabilities cannot replace another's sessions, busy ones included.
    const who = principal || holder;
    const caller = JSON.stringify([server, who]);
    const key = JSON.stringify([server, who, createHash('sha256').update(stableJson(capabilities)).digest('base64url')]);
    const existing = this.#entries.get(key);
    if (existing) {
      // Most recently used last: Map order is the eviction order.
      this.#entries.delete(key);
      this.#entries.set(key, existing);
      return existing.then((s) => {
        if (!s.dead) return s;
        if (this.#entries.get(key) === existing) this.#delete(key);
        return this.acquire(server, upstream, principal, holder, capabilities, clientInfo, checked);
      });
    }
    // This caller's own oldest session makes room for its new one.
    const mine = this.#byCaller.get(caller);
    if (mine && mine.size >= this.#opts.perCaller) {
      const oldest = mine.values().next().value!;
      const entry = this.#entries.get(oldest);
      this.#delete(oldest);
      void entry?.then(end, () => {});
    }
    const opening = open(key, server, upstream, principal, holder, capabilities, clientInfo, checked && { principal: checked.principal, holder: checked.holder, hid: ignoreHidden });
    this.#entries.set(key, opening);
    const keys = this.#byCaller.get(caller) ?? new Set<string>();
    keys.add(key);
    this.#byCaller.set(caller, keys);
    opening.catch(() => {
      if (this.#entries.get(key) === opening) this.#delete(key);
    });
    this.#evictOverflow();
    return opening;
  }

  /** Forgets an entry (the one place entries leave, so the per-caller count stays true). */
  #delete(key: string): void {
    this.#entries.delete(key);
    const [server, who] = JSON.parse(key) as [string, string];
    const caller = JSON.stringify([server, who]);
    const keys = this.#byCaller.get(caller);
    keys?.delete(key);
    if (keys?.size === 0) this.#byCaller.delete(caller);
  }

  /** The upstream no longer knows this session (or it is being retired): forget it here. */
  drop(session: PooledSession): void {
    session.dead = true;
    const entry = this.#entries.get(session.key);
    if (entry) void entry.then((s) => s === session && this.#entries.get(session.key) === entry && this.#delete(session.key));
  }

  /**
   * A reload replaced or removed these servers' upstream pools: their sessions here are the old
   * pool's. Forgotten at once (the next call opens one on the new pool), `letGo` told of each
   * (its listen streams are handed over), and ended upstream once nothing uses them (now, or when
   * their last call or listener lets go: `release`). Resolves once each is ended (the DELETE
   * answered or failed), so a removed pool can be closed after its sessions were.
   */
  async retire(servers: Iterable<string>, letGo: (session: PooledSession) => void): Promise<void> {
    const names = new Set(servers);
    const ended: Promise<void>[] = [];
    for (const [key, entry] of [...this.#entries]) {
      if (!names.has((JSON.parse(key) as [string])[0])) continue;
      this.#delete(key);
      ended.push(
        entry.then(
          (s) => {
            s.dead = true;
            letGo(s);
            if (s.busy === 0) return end(s);
            return new Promise<void>((resolve) => this.#retiring.set(s, resolve));
          },
          () => {},
        ),
      );
    }
    await Promise.all(ended);
  }

  /** A call or listener let go of `session`: a retired one nothing uses any more is ended. */
  release(session: PooledSession): void {
    session.busy--;
    if (session.busy > 0) return;
    const ended = this.#retiring.get(session);
    if (!ended) return;
    this.#retiring.delete(session);
    void end(session).then(ended);
  }

  /** Ends every session upstream, waiting at most `waitMs` for the upstreams to answer. */
  async close(waitMs = 1_000): Promise<void> {
    clearInterval(this.#sweeper);
    const all = [...this.#entries.values(), ...this.#retiring.keys()].map((s) => Promise.resolve(s));
    for (const ended of this.#retiring.values()) ended();
    this.#entries.clear();
    this.#retiring.clear();
    this.#byCaller.clear();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
    await Promise.race([Promise.allSettled(all.map(async (p) => end(await p))), deadline]);
    clearTimeout(timer);
  }

  #evictOverflow(): void {
    while (this.#entries.size > this.#opts.maxSessions) {
      const [key, oldest] = this.#entries.entries().next().value!;
      this.#delete(key);
      void oldest.then(end, () => {});
    }
  }

  #sweep(): void {
    const cutoff = Date.now() - this.#opts.idleMs;
    for (const [key, entry] of this.#entries) {
      void entry.then(
        (s) => {
          if (s.busy === 0 && s.lastUsed < cutoff && this.#entries.get(key) === entry) {
            this.#delete(key);
            void end(s);
          }
        },
        () => {},
      );
    }
  }
}

/** Request headers for a session-era upstream, as if a client had sent them. */
export function sessionHeaders(protocolVersion?: string, accept = 'application/json, text/event-stream'): Record<string, string> {
  const h: Record<string, string> = { 'content-type': 'application/json', accept };
  if (protocolVersion) h['mcp-protocol-version'] = protocolVersion;
  return h;
}

/** A ClientRequest for the upstream side, built from a message the gateway wrote. */
export function upstreamRequest(message: Message, protocolVersion: string, admission: Admission, headers = sessionHeaders(protocolVersion)): ClientRequest {
  return ownRequest(headers, message, protocolVersion, admission);
}

/** A session's initialize names no request to report hidden names to. */
const ignoreHidden = (): void => {};

/**
 * `caller`: the caller it is opened for, as the front door checked them, carried on its
 * initialize, so a virtual server opens it with the members whose rule lets them in
 * (src/upstream/compose.ts) instead of leaving out every member with one.
 */
async function open(key: string, server: string, upstream: Upstream, principal: string, holder: string, capabilities: Record<string, unknown>, clientInfo: Record<string, unknown> | undefined, caller: StampedCaller | undefined): Promise<PooledSession> {
  const init: Message = {
    jsonrpc: '2.0',
    id: 'mcpgw-initialize',
    method: 'initialize',
    params: { protocolVersion: UPSTREAM_REVISION, capabilities, clientInfo: clientInfo ?? GATEWAY_INFO },
  };
  const sessionId = SessionSealer.newId();
  const { response, placement } = await upstream.initialize(upstreamRequest(init, UPSTREAM_REVISION, GATEWAY_ORIGINATED, stampPrincipal(sessionHeaders(), caller)), sessionId, holder);
  const answer = await firstResponse(response);
  if (!answer?.result) {
    throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `initialize was refused: ${answer?.error?.message ?? `HTTP ${response.status}`}`);
  }
  const result = answer.result;
  const protocolVersion = typeof result.protocolVersion === 'string' ? result.protocolVersion : UPSTREAM_REVISION;
  const claims: SessionClaims = { id: sessionId, server, ...placement, principal, protocolVersion, issuedAt: Math.floor(Date.now() / 1000) };
  const note = await upstream.post(claims, upstreamRequest({ jsonrpc: '2.0', method: 'notifications/initialized' }, protocolVersion, GATEWAY_ORIGINATED));
  if (note.body !== null && typeof note.body !== 'string') note.body.resume();
  return {
    key,
    server,
    upstream,
    claims,
    protocolVersion,
    capabilities: (result.capabilities as Record<string, unknown> | undefined) ?? {},
    serverInfo: result.serverInfo as Record<string, unknown> | undefined,
    instructions: typeof result.instructions === 'string' ? result.instructions : undefined,
    clientCapabilities: capabilities,
    lastUsed: Date.now(),
    busy: 0,
    dead: false,
  };
}

/** The first JSON-RPC response in an upstream answer (JSON or SSE); the rest is released. */
export async function firstResponse(res: UpstreamResponse): Promise<Message | undefined> {
  const reader = new MessageReader(res);
  try {
    for (;;) {
      const m = await reader.next();
      if (m === undefined || m === MessageReader.TIMEOUT) return undefined;
      if (m.method === undefined) return m;
    }
  } finally {
    reader.close();
  }
}

async function end(s: PooledSession): Promise<void> {
  s.dead = true;
  try {
    const res = await s.upstream.delete(s.claims, upstreamRequest({ jsonrpc: '2.0', method: 'notifications/cancelled' }, s.protocolVersion, GATEWAY_ORIGINATED, sessionHeaders(s.protocolVersion)));
    if (res.body !== null && typeof res.body !== 'string') drain(res.body);
  } catch {
    // Already gone upstream: nothing to end.
  }
}

/** JSON with sorted keys: equal capabilities give equal pool keys whatever their order. */
function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
