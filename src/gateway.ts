import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import type { ServerResponse } from 'node:http';
import { Server as NetServer, type AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Authenticator } from './auth/authenticator.ts';
import { exchangesCallerTokens } from './config/auth.ts';
import { liveConfig, planReload, type ReloadPlan } from './config/reload.ts';
import type { GatewayConfig, ServerConfig } from './config/types.ts';
import { CALLER_TOKENS_MAX, CallerTokens } from './upstream/token-exchange.ts';
import { buildApp, serverLimits } from './http/app.ts';
import type { GatewayContext } from './http/context.ts';
import { OriginPolicy } from './http/origin.ts';
import { AuditLog } from './ops/audit.ts';
import { RedisCacheStore } from './cache/redis-store.ts';
import { ResultCache } from './cache/result-cache.ts';
import { MemoryCacheStore, type CacheStore } from './cache/store.ts';
import { HealthWatch } from './ops/health.ts';
import { createLogger } from './ops/logger.ts';
import { Metrics } from './ops/metrics.ts';
import { startTracing, type Tracing } from './ops/telemetry.ts';
import { connectRedis, type RedisClient } from './redis.ts';
import { memberCalls } from './pipeline/members.ts';
import { Pipeline } from './pipeline/pipeline.ts';
import { MemoryRateLimiter, type RateLimiter } from './resilience/limiter.ts';
import { RedisRateLimiter } from './resilience/redis-limiter.ts';
import { RedisSessionStore } from './session/redis-store.ts';
import { MemoryRouteStore, RedisRouteStore, type RouteStore } from './session/routes.ts';
import { MemorySessionStore, type SessionStore } from './session/store.ts';
import { SessionSealer, type SessionClaims } from './session/token.ts';
import { StreamHub } from './events/hub.ts';
import { MemoryEventLog } from './events/memory-log.ts';
import { RedisEventLog } from './events/redis-log.ts';
import { UpstreamEvents } from './upstream/events.ts';
import { Translator } from './translate/translator.ts';
import { bare, curated } from './curation/upstream.ts';
import { HttpUpstream } from './upstream/http.ts';
import { ComposedUpstream } from './upstream/compose.ts';
import { SseUpstream } from './upstream/sse.ts';
import { StdioUpstream } from './upstream/stdio.ts';
import type { Upstream } from './upstream/types.ts';

/** A pool a reload replaced is closed once idle: looked at this often. */
const RETIRE_POLL_MS = 1_000;

/** A pool a reload closes at once waits this long at most for the upstream sessions held on it to be ended first. */
const RETIRE_SESSIONS_WAIT_MS = 1_000;

/** How long a draining replica keeps its listener and idle connections (see Gateway.shutdown); at most half the grace. */
const DRAIN_LINGER_MS = 1_000;

export interface GatewayOptions {
  logger?: Logger;
  /** Collect Node's default process metrics (off in tests that run several gateways). */
  defaultMetrics?: boolean;
}

/**
 * A response counted while it is open (Gateway.track): the sets, written on every request, hold
 * this slot, which lets go of the response when it closes. With the responses themselves in the
 * sets, V8 promoted ≈ 2.4 KB more of every relayed call's objects to the old generation, left for
 * full GCs (docs/performance.md, "Objects that outlived their call").
 */
interface OpenResponse {
  res: ServerResponse | undefined;
}

/** A running gateway: the MCP listener, the metrics listener, the upstream pools and the stores. */
export class Gateway implements GatewayContext {
  /** The running configuration; a reload (Gateway.reconfigure) swaps it whole. */
  #config: GatewayConfig;
  readonly servers = new Map<string, Upstream>();
  readonly sealer: SessionSealer;
  readonly sessions: SessionStore;
  readonly origins: OriginPolicy;
  readonly metrics: Metrics;
  readonly hub: StreamHub;
  readonly log: Logger;
  #auth: Authenticator | undefined;
  /** auth: callers' validated tokens for upstreams that exchange them; undefined with auth off. */
  readonly #callers: CallerTokens | undefined;
  #audit: AuditLog | undefined;
  readonly legacyRoutes: RouteStore;
  /** The one way to an upstream for a caller's request (src/pipeline/pipeline.ts). */
  readonly pipeline: Pipeline;
  readonly translator: Translator;
  /** traces: OpenTelemetry, when configured (src/ops/telemetry.ts); undefined → off. */
  readonly tracing: Tracing | undefined;
  /** This process's id; sealed into stdio sessions, which live here only. */
  readonly node = randomBytes(6).toString('base64url');
  readonly events = new UpstreamEvents();
  readonly app: FastifyInstance;
  readonly #metricsApp: FastifyInstance | undefined;
  readonly #redis: RedisClient[] = [];
  #shuttingDown = false;
  /** Responses of requests (not standalone streams) still open. */
  readonly #requests = new Set<OpenResponse>();
  readonly #streams = new Set<OpenResponse>();
  readonly #health: HealthWatch;
  #healthTimer: NodeJS.Timeout | undefined;
  /** The configuration as it is now, for what is built once and reads it per request. */
  readonly #live: GatewayConfig;
  /** Pools replaced by a reload, kept until what they still carry has ended (see #retire). */
  readonly #retired = new Set<Upstream>();

  private constructor(config: GatewayConfig, opts: GatewayOptions, tracing: Tracing | undefined) {
    this.#config = config;
    this.#live = liveConfig(() => this.#config);
    this.tracing = tracing;
    this.log = opts.logger ?? createLogger(config.log.level);
    this.metrics = new Metrics({ defaultMetrics: opts.defaultMetrics, toolLabels: config.metrics.toolLabels, toolLabelLimit: config.metrics.toolLabelLimit });
    this.origins = new OriginPolicy(config.listen.allowedOrigins);
    // auth: each principal's latest validated token, stamped by the authenticator only while an
    // upstream exchanges it (RFC 8693; src/upstream/token-exchange.ts).
    this.#callers = config.auth.mode === 'none' ? undefined : new CallerTokens(CALLER_TOKENS_MAX);
    this.#auth = config.auth.mode === 'none' ? undefined : new Authenticator(config, exchangesTokens(config) ? this.#callers : undefined);
    this.#audit = config.audit.enabled ? new AuditLog(config.audit) : undefined;
    this.sealer = new SessionSealer(config.session.secret ?? randomBytes(32));
    let eventLog;
    let cacheStore: CacheStore;
    let limiter: RateLimiter;
    if (config.redis) {
      // A Redis that stops answering (paused, overloaded) fails commands after this, so the
      // features it serves degrade rather than stall requests; above the WAIT for replica acks.
      const client = connectRedis(config.redis, { commandTimeout: Math.max(2_000, config.events.replicaAckTimeoutMs + 1_000) });
      // traces: its round trips within a request become spans of that request.
      tracing?.instrumentRedis(client);
      const subscriber = connectRedis(config.redis, { enableOfflineQueue: true });
      const connections = [['command', client], ['subscriber', subscriber]] as const;
      for (const [connection, c] of connections) {
        c.on('error', (err: Error) => {
          this.metrics.redisError(connection);
          this.log.warn({ err: err.message, connection }, 'redis error');
        });
      }
      this.#redis.push(client, subscriber);
      this.metrics.watchRedis(() => this.#redis.every((r) => r.status === 'ready'));
      this.sessions = new RedisSessionStore(client, subscriber, config.redis.keyPrefix);
      // legacy: where 2024-11-05 sessions live upstream.
      this.legacyRoutes = new RedisRouteStore(client, config.redis.keyPrefix);
      const { ttlMs, maxLength, replicaAcks, replicaAckTimeoutMs } = config.events;
      // traces: its writes for a stream are spans of the request the stream answers.
      eventLog = new RedisEventLog(client, { prefix: config.redis.keyPrefix, ttlMs, maxLength, replicaAcks, replicaAckTimeoutMs, tracer: tracing });
      cacheStore = new RedisCacheStore(client);
      limiter = new RedisRateLimiter(client, new MemoryRateLimiter(), (err) => this.pipeline.emit('storeError', { what: 'rateLimit', error: err.message }));
    } else {
      this.sessions = new MemorySessionStore();
      this.legacyRoutes = new MemoryRouteStore();
      eventLog = new MemoryEventLog({ ttlMs: config.events.ttlMs, maxLength: config.events.maxLength });
      cacheStore = new MemoryCacheStore(config.cache.maxEntries, config.cache.maxBytes);
      limiter = new MemoryRateLimiter();
    }
    this.hub = new StreamHub(eventLog, {
      node: this.node,
      retryMs: config.events.retryMs,
      keepAliveMs: config.events.keepAliveMs,
      maxBuffer: config.events.maxBuffer,
      detachedGraceMs: config.events.detachedGraceMs,
      endedTtlMs: config.events.endedTtlMs,
    }, tracing);
    // These read the configuration per request: given the live view, they follow a reload.
    // (The result cache is always there: a reload may turn caching on for a server.)
    this.pipeline = new Pipeline({
      config: this.#live,
      metrics: this.metrics,
      limiter,
      prefix: config.redis?.keyPrefix ?? '',
      cache: new ResultCache(cacheStore, config.redis?.keyPrefix ?? ''),
      interrupt: (key, error, ids) => this.hub.interrupt(key, error, ids),
    });
    this.translator = new Translator(this.#live);
    for (const [name, upstream] of this.#buildUpstreams(config, Object.keys(config.servers))) this.servers.set(name, upstream);
    this.metrics.watchUpstreams(this.servers);
    this.#health = new HealthWatch(this.servers);
    this.#wireEvents();
    this.app = buildApp(this, this.log);
    this.#metricsApp = config.metrics.enabled ? this.#buildMetricsApp() : undefined;
  }

  static async start(config: GatewayConfig, opts: GatewayOptions = {}): Promise<Gateway> {
    const log = opts.logger ?? createLogger(config.log.level);
    const gw = new Gateway(config, { ...opts, logger: log }, await startTracing(config.telemetry, log));
    if (!config.session.secret) {
      gw.log.warn('session.secret is not set: session ids are sealed with a random per-process key, so sessions cannot move between replicas');
    }
    if (config.auth.mode === 'none') gw.log.warn('auth.mode is none: every caller is admitted without authentication');
    else gw.log.info({ mode: config.auth.mode, issuers: config.auth.issuers.map((i) => i.issuer) }, 'auth on');
    try {
      await gw.app.listen({ host: config.listen.host, port: config.listen.port });
      if (gw.#metricsApp) await gw.#metricsApp.listen({ host: config.metrics.host, port: config.metrics.port });
    } catch (err) {
      await gw.close();
      throw err;
    }
    gw.log.info({ url: gw.url, metrics: gw.metricsUrl, servers: [...gw.servers.keys()] }, 'gateway listening');
    // A server's health also changes with time alone (an ejection runs out): looked at every second.
    gw.#healthTimer = setInterval(() => gw.#logHealth(), 1_000).unref();
    gw.#reportComposed(gw.servers);
    return gw;
  }

  get config(): GatewayConfig {
    return this.#config;
  }

  get auth(): Authenticator | undefined {
    return this.#auth;
  }

  get audit(): AuditLog | undefined {
    return this.#audit;
  }

  get url(): string {
    return addressUrl(this.app, this.config.listen.tls ? 'https' : 'http');
  }

  get metricsUrl(): string | undefined {
    return this.#metricsApp ? addressUrl(this.#metricsApp) : undefined;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  async endSession(claims: SessionClaims): Promise<void> {
    const remaining = claims.issuedAt * 1000 + this.config.session.maxLifetimeMs - Date.now();
    await this.sessions.end(claims.id, Math.max(1_000, remaining));
    const published = this.servers.get(claims.server);
    const upstream = published && bare(published);
    if (upstream instanceof StdioUpstream) upstream.end(claims.id, 'session ended');
    // legacy, compose: an SSE upstream connection, or a virtual session's members, held here.
    else if (upstream instanceof SseUpstream) upstream.end(claims.id);
    else if (upstream instanceof ComposedUpstream) upstream.end(claims);
  }

  /**
   * Runs `next` from now on (SIGHUP, src/reload.ts), without a restart. Everything new is built
   * first — a pool or an audit destination that cannot be built throws, and nothing has changed —
   * then swapped in at once, between two requests:
   * - requests read the configuration, the servers, the authenticator and the audit log as they
   *   come, so the next one sees the new; what is in flight finishes as it began;
   * - a removed server's pool is closed: its streams end (the event log keeps what they carried)
   *   and its sessions answer 404, as the server does. The upstream sessions translation held on
   *   it are ended (DELETE) through it first, a bounded while;
   * - a server whose upstream side changed gets a new pool, so new sessions go to the new replicas;
   *   an HTTP pool's sessions on a replica still listed go on in the new one, and the old pool is
   *   closed once what it carries has ended (at most the server's timeout.max: a standalone GET
   *   stream or a 2026-07-28 listen would last as long as its client likes, so both are handed
   *   over to the new pool at once; a call not). A stdio or `transport: sse`
   *   pool holds its sessions' processes and connections itself: it is closed at once, and those
   *   sessions end as on DELETE;
   * - servers whose other keys changed (policy, cache, retries, time limits, rate limits) keep
   *   their pools: those keys are read per request.
   * Keys that cannot change live keep their running value; the plan names them (`kept`).
   */
  reconfigure(next: GatewayConfig): ReloadPlan {
    const running = this.#config;
    const plan = planReload(running, next);
    if (!plan.differs) return plan;
    const config = plan.config;
    const fresh = this.#buildUpstreams(config, [...plan.added, ...plan.rebuilt]);
    let auth = this.#auth;
    let audit = this.#audit;
    try {
      // The authenticator holds the auth section and the servers' policies as they were built.
      if (config.auth.mode !== 'none' && (!isDeepStrictEqual(authInputs(running), authInputs(config)) || exchangesTokens(running) !== exchangesTokens(config))) auth = new Authenticator(config, exchangesTokens(config) ? this.#callers : undefined);
      if (!isDeepStrictEqual(running.audit, config.audit)) audit = config.audit.enabled ? new AuditLog(config.audit) : undefined;
    } catch (err) {
      for (const u of fresh.values()) void u.close();
      throw err;
    }
    // A call parked for input on a removed server can never be retried: it ends now (before its
    // session is retired, which waits for it).
    this.translator.endParked(plan.removed);
    // What translation learnt of an upstream (its era) and holds on it (sessions for 2026-07-28
    // clients, their listen streams) is that upstream's: a server whose upstream (or era) changed
    // starts afresh. The sessions it held are ended upstream through the old pool, so a pool
    // closed at once waits (a bounded while) for those DELETEs first.
    const sessionsEnded = this.translator.forget([...plan.removed, ...plan.rebuilt, ...plan.changed.filter((name) => running.servers[name]!.era !== config.servers[name]!.era)]);
    for (const name of plan.removed) {
      this.#retire(name, this.servers.get(name)!, 0, sessionsEnded);
      this.servers.delete(name);
    }
    const handOver: string[] = [];
    for (const [name, upstream] of fresh) {
      const old = this.servers.get(name);
      // An HTTP pool's calls in flight end within their server's time limit (timeout.max).
      if (old) this.#retire(name, old, old.kind === 'http' ? running.servers[name]!.timeout.maxMs : 0, sessionsEnded);
      if (old?.kind === 'http') handOver.push(name);
      this.servers.set(name, upstream);
    }
    // Its standalone GET streams would hold the old pool until timeout.max: their clients resume
    // them with Last-Event-ID, on the new pool (the events are in the log).
    for (const name of handOver) {
      const streams = this.hub.handOverStandalone(name);
      if (streams > 0) this.log.info({ server: name, streams }, 'standalone streams handed over to the new upstream pool (clients resume them)');
    }
    this.#config = config;
    this.#auth = auth;
    if (audit !== this.#audit) this.#audit?.close();
    this.#audit = audit;
    this.log.level = config.log.level;
    this.#reportComposed(fresh);
    return plan;
  }

  /**
   * compose: what each virtual server publishes, collisions included, is reported when it is
   * built (at start, on a reload) — or, over a member that exchanges callers' tokens, once a
   * caller's session lets it look (events `composed`, `composeFailed`).
   */
  #reportComposed(servers: ReadonlyMap<string, Upstream>): void {
    for (const published of servers.values()) {
      const upstream = bare(published);
      if (upstream instanceof ComposedUpstream) upstream.discover();
    }
  }

  /** The upstream pools of `names` as `config` describes them; compose members not among them are the running ones. */
  #buildUpstreams(config: GatewayConfig, names: readonly string[]): Map<string, Upstream> {
    const built = new Map<string, Upstream>();
    const servers = names.map((name) => [name, config.servers[name]!] as const);
    try {
      for (const [name, server] of servers) if (!server.compose) built.set(name, curated(server, this.#pool(server)));
      // compose: virtual servers once their members exist; members as curated, each by its own server's curation.
      for (const [name, server] of servers) {
        if (!server.compose) continue;
        const members = server.compose.map((m) => ({ server: m, upstream: built.get(m) ?? this.servers.get(m)! }));
        const discoverForCaller = server.compose.some((m) => exchangesCallerTokens(config.servers[m]));
        built.set(name, curated(server, new ComposedUpstream(name, members, this.events, memberCalls(this.pipeline, (server) => this.#auth?.policy(server)), { discoverForCaller })));
      }
    } catch (err) {
      for (const u of built.values()) void u.close();
      throw err;
    }
    return built;
  }

  #pool(server: ServerConfig): Upstream {
    // legacy: `transport: sse` replicas (SseUpstream).
    const kind = server.upstreams[0]!.kind;
    return kind === 'http' ? new HttpUpstream(server, this.events, this.tracing, this.#callers) : kind === 'sse' ? new SseUpstream(server, this.events, this.node, this.tracing) : new StdioUpstream(server, this.events, this.node, this.tracing);
  }

  /**
   * Closes a pool a reload replaced or removed once nothing runs through it any more, at most
   * `withinMs` from now; with 0, as soon as `sessionsEnded` (the upstream sessions translation
   * held on it, ended through it), at most RETIRE_SESSIONS_WAIT_MS from now.
   */
  #retire(server: string, upstream: Upstream, withinMs: number, sessionsEnded: Promise<void>): void {
    const idle = () => upstream.replicaStates().every((r) => r.inflight === 0 && r.streams === 0);
    if (withinMs === 0) {
      void bounded(sessionsEnded, RETIRE_SESSIONS_WAIT_MS).then(() => upstream.close().catch(() => {}));
      return;
    }
    // Idle or not, it is looked at from the next poll on: what the reload itself ends on it (the
    // upstream sessions translation held, src/translate/session-pool.ts) goes out through it first.
    this.#retired.add(upstream);
    const since = performance.now();
    const close = (drained: boolean) => {
      clearInterval(poll);
      clearTimeout(cap);
      this.#retired.delete(upstream);
      void upstream.close().catch(() => {});
      this.log.info({ server, drained, ms: Math.round(performance.now() - since) }, 'replaced upstream pool closed');
    };
    const poll = setInterval(() => idle() && close(true), RETIRE_POLL_MS).unref();
    const cap = setTimeout(() => close(false), withinMs).unref();
  }

  track(res: ServerResponse, kind: 'request' | 'stream', closed?: () => void): void {
    this.metrics.activeConnections.inc();
    const open = kind === 'stream' ? this.#streams : this.#requests;
    const slot: OpenResponse = { res };
    open.add(slot);
    // Draining: this connection ends with this response, so the client's next request goes elsewhere.
    if (this.#shuttingDown) res.setHeader('connection', 'close');
    // 'close' comes once: `on` spares the wrapper `once` would allocate per request.
    res.on('close', () => {
      this.metrics.activeConnections.dec();
      slot.res = undefined;
      open.delete(slot);
      closed?.();
    });
  }

  /**
   * Readiness of this replica alone: listening, not draining, Redis reachable when configured.
   * A server without a healthy upstream does not count (see src/ops/health.ts): it would take
   * every replica out of its Service at once, the healthy servers with it.
   */
  notReady(): string[] {
    const reasons: string[] = [];
    if (this.#shuttingDown) reasons.push('shutting down');
    else if (!this.app.server.listening) reasons.push('not listening');
    if (!this.sessions.healthy()) reasons.push('redis unreachable');
    return reasons;
  }

  /**
   * Graceful stop (SIGTERM): stop being ready, finish what is in flight, move keep-alive clients
   * off without an error.
   * - The listener stops accepting: a new connection is refused, which a client (or a balancer)
   *   knows it can take elsewhere. Connections already open stay.
   * - Every response from now on carries `Connection: close` (so does every response in flight
   *   that has not begun): each open connection serves its next request and ends, and its client
   *   opens the next one elsewhere. New streams and new process-local sessions are refused with
   *   MCPGW_ERR_SHUTTING_DOWN and Retry-After (src/http/mcp.ts); standalone GET streams end
   *   (their clients resume on another replica).
   * - For DRAIN_LINGER_MS idle connections stay open, so that a keep-alive client sending its
   *   next request gets an answer rather than a connection closed under that request; then each
   *   connection is closed as soon as it is idle.
   * When no connection is left, or at the deadline (what is left is cut), stdio children are
   * killed and the stores closed.
   */
  async shutdown(graceMs = this.config.shutdown.graceMs): Promise<void> {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    const server = this.app.server;
    this.log.info({ graceMs, inflight: this.#requests.size, streams: this.#streams.size }, 'shutting down');
    // net.Server's close (tls.Server has no other), not http.Server's: that one would also close
    // every idle keep-alive connection at once, under a request its client may be sending.
    // 'close' comes once the last connection has ended.
    const drained = new Promise<'drained'>((resolve) => server.once('close', () => resolve('drained')));
    NetServer.prototype.close.call(server);
    for (const { res } of this.#requests) if (res && !res.headersSent) res.setHeader('connection', 'close');
    for (const { res } of this.#streams) res?.end();
    const timers: NodeJS.Timeout[] = [];
    const after = <T>(ms: number, value: T) => new Promise<T>((resolve) => timers.push(setTimeout(() => resolve(value), ms)));
    const late = after(graceMs, 'deadline' as const);
    let outcome = await Promise.race([drained, late, after(Math.min(DRAIN_LINGER_MS, graceMs / 2), 'linger' as const)]);
    if (outcome === 'linger') {
      // Node decides what is idle: a connection with a request it has begun to read is not.
      server.closeIdleConnections();
      const sweep = setInterval(() => server.closeIdleConnections(), 50);
      outcome = await Promise.race([drained, late]);
      clearInterval(sweep);
    }
    for (const t of timers) clearTimeout(t);
    if (outcome === 'deadline') {
      this.log.warn({ inflight: this.#requests.size }, 'shutdown grace period over; closing remaining connections');
      server.closeAllConnections();
    }
    await this.close();
    this.log.info('stopped');
  }

  /** Immediate release of everything (after shutdown, or in tests). */
  async close(): Promise<void> {
    this.#shuttingDown = true;
    clearInterval(this.#healthTimer);
    const closing = this.app.close();
    this.app.server.closeAllConnections();
    // Each step is bounded: a close that waits on something that never settles (a command on a
    // connection gone away) must not keep a stopping replica, or a test, from ending.
    await bounded(Promise.allSettled([closing, this.#metricsApp?.close()]));
    await bounded(this.hub.close());
    // stateless: end the upstream sessions held for 2026-07-28 clients while the pools still work.
    await bounded(this.translator.close().catch(() => {}));
    await bounded(Promise.allSettled([...this.servers.values(), ...this.#retired].map((u) => u.close())));
    await bounded(Promise.allSettled([this.sessions.close(), this.hub.log.close()]));
    for (const r of this.#redis) r.disconnect();
    this.audit?.close();
    // traces: what is still queued is exported before the process goes.
    if (this.tracing) await bounded(this.tracing.shutdown().catch(() => {}));
  }

  /** One line per server whose health changed: `server down` (with its state) or `server up`. */
  #logHealth(): void {
    for (const c of this.#health.changes()) {
      if (c.state === 'up') this.log.info({ server: c.server, previous: c.previous }, 'server up');
      else this.log.warn({ server: c.server, state: c.state, previous: c.previous }, 'server down');
    }
  }

  #wireEvents(): void {
    const log = this.log;
    this.events.on('eject', (e) => {
      this.metrics.upstreamEjections.inc({ server: e.server, replica: e.replica });
      log.warn(e, 'upstream replica ejected');
      this.#logHealth();
    });
    this.events.on('restore', (e) => {
      log.info(e, 'upstream replica restored');
      this.#logHealth();
    });
    this.events.on('spawn', (e) => {
      this.metrics.stdioProcesses.inc({ server: e.server });
      log.debug(e, 'stdio upstream started');
    });
    this.events.on('exit', (e) => {
      this.metrics.stdioProcesses.dec({ server: e.server });
      log.info(e, 'stdio upstream exited');
    });
    this.events.on('stderr', (e) => log.info({ server: e.server, pid: e.pid, stderr: e.line }, 'upstream stderr'));
    this.events.on('protocolError', (e) => log.warn(e, 'upstream protocol error'));
    this.events.on('collision', (e) => log.warn(e, 'virtual server: names collide; the first member keeps each'));
    this.events.on('composed', (e) => log[e.collisions ? 'warn' : 'info'](e, 'virtual server composed'));
    this.events.on('composeFailed', (e) => log.warn({ server: e.server, err: e.reason }, 'virtual server: members could not be listed'));
    this.hub.on('resume', (e) => this.metrics.resume(e.outcome));
    this.hub.on('append', (e) => this.metrics.eventLogAppend(e.seconds));
    this.hub.on('degraded', (e) => log.warn(e, 'event log unavailable: stream continues without resumption'));
    this.hub.on('resumeFailed', (e) => log.warn(e, 'resumption failed'));
    this.pipeline.on('retry', (e) => log.debug(e, 'upstream call retried'));
    this.pipeline.on('timeout', (e) => log.info(e, 'upstream request timed out; cancelled upstream'));
    let storeWarned = 0;
    this.pipeline.on('storeError', (e) => {
      // Once per 10 s at most: during an outage every request would say it.
      if (Date.now() - storeWarned < 10_000) return;
      storeWarned = Date.now();
      log.warn(e, 'cache or rate-limit store unavailable: no caching, rate limits per replica');
    });
  }

  #buildMetricsApp(): FastifyInstance {
    // The same bounds on slow and idle clients as the MCP listener: a scrape endpoint has file descriptors to lose too.
    const limits = serverLimits(this.config.listen);
    const app = Fastify({ logger: false, http: limits, requestTimeout: limits.requestTimeout, keepAliveTimeout: limits.keepAliveTimeout });
    app.get('/metrics', async (_request, reply) => {
      reply.header('content-type', this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    return app;
  }
}

/** The longest one step of close() may take. */
const CLOSE_STEP_MS = 5_000;

/** Waits for `p`, at most `ms` (then goes on without it). */
async function bounded(p: Promise<unknown>, ms = CLOSE_STEP_MS): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    await Promise.race([p.then(() => undefined, () => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** What an Authenticator is built from (src/auth/authenticator.ts): the auth section and each server's policy. */
function authInputs(config: GatewayConfig): unknown {
  return [config.auth, Object.entries(config.servers).map(([name, s]) => [name, s.policy])];
}

function addressUrl(app: FastifyInstance, scheme = 'http'): string {
  const a = app.server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return `${scheme}://${host}:${a.port}`;
}

/** auth: some upstream exchanges the caller's token for its own (credentials.tokenExchange). */
function exchangesTokens(config: GatewayConfig): boolean {
  return Object.values(config.servers).some(exchangesCallerTokens);
}
