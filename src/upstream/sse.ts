import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { HttpUpstreamConfig, ServerConfig, SseUpstreamConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import type { SessionClaims } from '../session/token.ts';
import type { UpstreamEvents } from './events.ts';
import { MessageFramer, oldestIdle, singleMessages } from './framing.ts';
import { HolderCounts } from './holders.ts';
import { headerValue } from '../protocol/headers.ts';
import { holdsRequest } from '../protocol/jsonrpc.ts';
import { HttpReplica, isUnreachable, upstreamError } from './http.ts';
import { readSseEvents } from './messages.ts';
import { anyAvailable, pickLeastLoaded } from './replica.ts';
import type { ClientRequest, ReplicaSnapshot, SessionPlacement, Upstream, UpstreamHealth, UpstreamResponse } from './types.ts';
import { discard, drain } from './body.ts';
import { traced, type ExchangeTracer } from './tracing.ts';

/** One gateway session's connection to a 2024-11-05 server: its SSE stream and where to POST. */
class SseSession {
  readonly id: string;
  readonly replica: HttpReplica;
  readonly framer = new MessageFramer();
  /** Its place among its caller's connections (see Upstream.initialize), given back when it closes. */
  readonly slot: Slot;
  readonly holder: string;
  /** Path (and query) of the `endpoint` event, on the replica's origin. */
  endpoint = '';
  body: Readable | undefined;
  closed = false;

  constructor(id: string, replica: HttpReplica, slot: Slot, holder: string) {
    this.id = id;
    this.replica = replica;
    this.slot = slot;
    this.holder = holder;
  }
}

/** One of a holder's `maxSessionsPerCaller` places: taken before the first await, given back once. */
interface Slot {
  /** A registered session owns it (and gives it back when it closes). */
  owned: boolean;
  release(): void;
}

/**
 * legacy: a server whose replicas speak the 2024-11-05 HTTP+SSE transport (`transport: sse`).
 * Each gateway session holds one SSE connection to a replica, opened at initialize: the
 * `endpoint` event names where to POST, and every answer comes back on that stream. As for
 * stdio, the gateway is then the Streamable HTTP server (src/upstream/framing.ts), and the
 * connection lives on the gateway replica that opened it (`node` in the session id).
 */
export class SseUpstream implements Upstream {
  readonly kind = 'sse' as const;
  readonly #server: ServerConfig;
  readonly #replicas: HttpReplica[];
  readonly #events: UpstreamEvents;
  readonly #node: string;
  readonly #sessions = new Map<string, SseSession>();
  /** Sessions being opened: their ids and their holders' slots are taken before the first await. */
  readonly #opening = new Set<string>();
  /** Connections per holder (opening or open), for `maxSessionsPerCaller`. */
  readonly #held = new HolderCounts();
  readonly #sweeper: NodeJS.Timeout;

  /** traces: undefined when tracing is off. */
  readonly #tracer: ExchangeTracer | undefined;

  constructor(server: ServerConfig, events: UpstreamEvents, node: string, tracer?: ExchangeTracer) {
    this.#server = server;
    this.#events = events;
    this.#node = node;
    this.#tracer = tracer;
    this.#replicas = (server.upstreams as SseUpstreamConfig[]).map((u) => new HttpReplica({ ...u, kind: 'http' } as HttpUpstreamConfig, server));
    const every = Math.max(250, Math.min(30_000, Math.floor(server.idleTimeoutMs / 4)));
    this.#sweeper = setInterval(() => this.#reapIdle(), every);
    this.#sweeper.unref();
  }

  async initialize(req: ClientRequest, sessionId: string, holder: string): Promise<{ response: UpstreamResponse; placement: SessionPlacement }> {
    if (this.#sessions.has(sessionId) || this.#opening.has(sessionId)) throw new GatewayError('MCPGW_ERR_ALREADY_INITIALIZED', 'this session already has its upstream connection');
    if (this.#held.of(holder) >= this.#server.maxSessionsPerCaller) {
      // As for stdio: the caller's own least recently used idle connection makes room.
      const idle = oldestIdle([...this.#sessions.values()].filter((s) => !s.closed), holder);
      if (!idle) throw new GatewayError('MCPGW_ERR_CALLER_CAPACITY', `server "${this.#server.name}": ${this.#server.maxSessionsPerCaller} busy connections (maxSessionsPerCaller)`);
      this.#close(idle, 'replaced by a newer session of the same caller (maxSessionsPerCaller)');
    }
    this.#opening.add(sessionId);
    this.#held.add(holder);
    let released = false;
    const slot: Slot = {
      owned: false,
      release: () => {
        if (released) return;
        released = true;
        this.#held.remove(holder);
      },
    };
    try {
      return await this.#open(req, sessionId, slot, holder);
    } finally {
      this.#opening.delete(sessionId);
      // No session registered (every replica failed): the place is free again.
      if (!slot.owned) slot.release();
    }
  }

  async #open(req: ClientRequest, sessionId: string, slot: Slot, holder: string): Promise<{ response: UpstreamResponse; placement: SessionPlacement }> {
    const tried = new Set<string>();
    for (;;) {
      const replica = pickLeastLoaded(this.#replicas, Date.now(), tried);
      if (!replica) throw new GatewayError(tried.size ? 'MCPGW_ERR_UPSTREAM_UNAVAILABLE' : 'MCPGW_ERR_NO_HEALTHY_UPSTREAM', `server "${this.#server.name}"`);
      tried.add(replica.key);
      let session: SseSession;
      try {
        session = await this.#connect(sessionId, replica, slot, holder);
      } catch (err) {
        // Nothing exists upstream yet: the next replica may do.
        if (isUnreachable(err)) {
          this.#failed(replica, 'unreachable');
          continue;
        }
        throw upstreamError(err, this.#server.name);
      }
      const response = await this.#request(session, req);
      return { response, placement: { upstream: replica.key, upstreamSession: '', node: this.#node } };
    }
  }

  async post(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse> {
    const session = this.#session(claims);
    if (holdsRequest(req.messages)) return this.#request(session, req);
    session.framer.lastActivity = Date.now();
    const span = this.#tracer?.exchange(this.#server.name, session.replica.key, 'sse', 'POST', req.messages, req.resendCount);
    const sent = this.#send(session, req, span?.context).then((): UpstreamResponse => ({ status: 202, headers: {}, body: null }));
    return span ? traced(span, sent) : sent;
  }

  async get(claims: SessionClaims, _req: ClientRequest, lastEventId?: string): Promise<UpstreamResponse> {
    // The 2024-11-05 transport cannot resume; a stream of an answer is not reopened.
    if (lastEventId) return { status: 404, headers: {}, body: null };
    return this.#session(claims).framer.openGet();
  }

  async delete(claims: SessionClaims): Promise<UpstreamResponse> {
    this.#close(this.#session(claims), 'session deleted');
    return { status: 200, headers: {}, body: null };
  }

  /** Ends a session's connection, e.g. when the gateway session expired. */
  end(sessionId: string): void {
    const session = this.#sessions.get(sessionId);
    if (session) this.#close(session, 'session ended');
  }

  health(): UpstreamHealth {
    return anyAvailable(this.#replicas) ? 'up' : 'no_healthy_upstream';
  }

  replicaStates(): readonly ReplicaSnapshot[] {
    return this.#replicas.map((r) => r.snapshot());
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    for (const s of this.#sessions.values()) this.#close(s, 'gateway shutting down');
    await Promise.all(this.#replicas.map((r) => r.destroy()));
  }

  /** Opens the SSE stream and waits for its `endpoint` event. */
  async #connect(sessionId: string, replica: HttpReplica, slot: Slot, holder: string): Promise<SseSession> {
    const res = await this.#http(replica, 'GET', { accept: 'text/event-stream' }, undefined);
    if (res.statusCode !== 200 || !headerValue(res.headers['content-type']).startsWith('text/event-stream')) {
      discard(res.body);
      if (res.statusCode >= 500) this.#failed(replica, `HTTP ${res.statusCode}`);
      throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `server "${this.#server.name}": GET answered HTTP ${res.statusCode}, not an SSE stream`);
    }
    const session = new SseSession(sessionId, replica, slot, holder);
    session.body = res.body;
    replica.streams++;
    const origin = new URL(replica.url).origin;
    return new Promise<SseSession>((resolve, reject) => {
      const timer = setTimeout(() => {
        discard(res.body);
        reject(new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `server "${this.#server.name}" sent no endpoint event`));
      }, this.#server.requestTimeoutMs);
      readSseEvents(
        res.body,
        (e) => {
          if (e.event === 'endpoint' && !session.endpoint) {
            const url = new URL(e.data, replica.url);
            clearTimeout(timer);
            if (url.origin !== origin) {
              discard(res.body);
              return reject(new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `server "${this.#server.name}": endpoint ${url.origin} is not on ${origin}`));
            }
            session.endpoint = url.pathname + url.search;
            this.#sessions.set(sessionId, session);
            slot.owned = true;
            return resolve(session);
          }
          if ((e.event === undefined || e.event === 'message') && e.data && !session.framer.receive(e.data)) {
            this.#events.emit('protocolError', { server: this.#server.name, replica: replica.key, detail: `not JSON on the SSE stream: ${e.data.slice(0, 200)}` });
          }
        },
        (err) => {
          clearTimeout(timer);
          replica.streams--;
          if (!session.endpoint) reject(err ? upstreamError(err, this.#server.name) : new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', 'the SSE stream ended before its endpoint event'));
          this.#close(session, err ? `stream broke: ${err.message}` : 'stream ended');
        },
      );
    });
  }

  #request(session: SseSession, req: ClientRequest): Promise<UpstreamResponse> {
    // traces: the exchange's context goes in each message's _meta and on its POST (the answer comes on the stream).
    const span = this.#tracer?.exchange(this.#server.name, session.replica.key, 'sse', 'POST', req.messages, req.resendCount);
    const answer = session.framer.request(req, () => this.#send(session, req, span?.context), (err) => upstreamError(err, this.#server.name));
    return span ? traced(span, answer) : answer;
  }

  /** POSTs the messages of `req` one at a time, in order (a 2024-11-05 server takes no batches). */
  async #send(session: SseSession, req: ClientRequest, trace?: Readonly<Record<string, string>>): Promise<void> {
    for (const message of singleMessages(req, trace)) await this.#sendOne(session, Buffer.from(message), trace);
  }

  async #sendOne(session: SseSession, body: Buffer, trace: Readonly<Record<string, string>> | undefined): Promise<void> {
    const res = await this.#http(session.replica, 'POST', { 'content-type': 'application/json', ...trace }, body, session.endpoint);
    drain(res.body);
    if (res.statusCode === 404) {
      this.#close(session, 'the upstream forgot the session');
      throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'the upstream ended it');
    }
    if (res.statusCode < 200 || res.statusCode >= 300) throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `server "${this.#server.name}": POST answered HTTP ${res.statusCode}`);
  }

  async #http(replica: HttpReplica, method: 'GET' | 'POST', extra: Record<string, string>, body: Buffer | undefined, path = replica.path): Promise<Dispatcher.ResponseData> {
    // Built from scratch, as for Streamable HTTP: nothing of the client's reaches the upstream.
    const headers: Record<string, string> = { ...replica.headers, ...extra };
    if (replica.credentials) headers[replica.credentials.header] = await replica.credentials.value();
    replica.inflight++;
    try {
      const res = await replica.request({ path, method, headers, body, headersTimeout: this.#server.requestTimeoutMs }, this.#server.requestTimeoutMs, this.#server.name);
      replica.succeed();
      return res;
    } finally {
      replica.inflight--;
    }
  }

  #session(claims: SessionClaims): SseSession {
    const session = claims.node === this.#node ? this.#sessions.get(claims.id) : undefined;
    if (!session) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', claims.node === this.#node ? 'its upstream connection closed' : 'its upstream connection lives on another gateway replica');
    return session;
  }

  #close(session: SseSession, reason: string): void {
    if (session.closed) return;
    session.closed = true;
    if (this.#sessions.get(session.id) === session) this.#sessions.delete(session.id);
    if (session.slot.owned) session.slot.release();
    if (session.body) discard(session.body);
    session.framer.close(new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', `server "${this.#server.name}": ${reason}`));
  }

  #failed(replica: HttpReplica, reason: string): void {
    if (replica.fail(Date.now())) this.#events.emit('eject', { server: this.#server.name, replica: replica.key, reason });
  }

  #reapIdle(): void {
    const cutoff = Date.now() - this.#server.idleTimeoutMs;
    for (const s of this.#sessions.values()) if (s.framer.idle && s.framer.lastActivity < cutoff) this.#close(s, 'idle timeout');
  }
}
