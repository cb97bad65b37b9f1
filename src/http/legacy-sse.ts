import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { guardRequest, guardResponse, guardStream, type GuardPlan } from '../auth/guard.ts';
import { errorBody, GatewayError, type JsonRpcId } from '../errors.ts';
import { SessionFeed, tailSession } from '../events/session-stream.ts';
import type { LoggedEvent } from '../events/log.ts';
import { methodLabel } from '../ops/metrics.ts';
import { parseAnswer, responseFailure, textFailure, type AnswerSink } from '../protocol/answers.ts';
import { idKey, parseBody, type Envelope } from '../protocol/jsonrpc.ts';
import { GATEWAY_ORIGINATED, type GatewayOriginated } from '../pipeline/admission.ts';
import { sessionExchange } from '../pipeline/exchange.ts';
import type { PipelineRequest } from '../pipeline/request.ts';
import { allowsBatch, LEGACY_REVISION } from '../protocol/revisions.ts';
import { SessionSealer, type SessionClaims } from '../session/token.ts';
import { headerValue } from '../protocol/headers.ts';
import { answers, collectMessages, isSse, readSseEvents, readText, splitJson } from '../upstream/messages.ts';
import { HolderCounts } from '../upstream/holders.ts';
import { clientRequest, type ClientRequest, type SessionPlacement, type Upstream, type UpstreamResponse } from '../upstream/types.ts';
import type { GatewayContext } from './context.ts';
import { stampPrincipal, type StampedCaller } from '../auth/principal.ts';
import { checkAccept, handle, openSession, serverOf, stampedCaller, withSession, type Call, type McpRequest, type Step } from './mcp.ts';
import { discard, drain } from '../upstream/body.ts';
import { PollSchedule } from '../upstream/polling.ts';

/**
 * The 2024-11-05 HTTP+SSE transport, for old clients: `GET /mcp/<server>/sse` opens the session's
 * one SSE stream, whose first event `endpoint` names `messages?sessionId=<id>`; the client POSTs
 * every message there and reads every answer on the stream.
 *
 * The session is an ordinary gateway session (its sealed id is the `sessionId`), reached upstream
 * over whatever the server speaks. Everything for the client goes through the event log
 * (src/events/session-stream.ts): the replica that handles a POST appends the upstream's answer,
 * the replica holding the client's stream follows the log, and event ids are `<sessionId>.<seq>`,
 * so a client that reconnects with Last-Event-ID — to any replica — gets what it missed. One
 * replica at a time, the session's owner, also reads the upstream's standalone stream into it
 * (notifications, server→client requests); ownership moves with the client.
 */
export function registerLegacyRoutes(app: FastifyInstance, gw: GatewayContext): void {
  const legacy = new LegacySessions(gw);
  const onSse: Step = (_gw, request, call) => legacy.onSse(request, call);
  const onMessage: Step = (_gw, request, call) => legacy.onMessage(request, call);
  app.get<{ Params: { server: string } }>('/mcp/:server/sse', (request, reply) => handle(gw, request as McpRequest, reply, onSse));
  app.post<{ Params: { server: string }; Body: Buffer | undefined }>('/mcp/:server/messages', (request, reply) => handle(gw, request, reply, onMessage));
  app.addHook('onClose', async () => legacy.close());
}

/** What this replica knows of one legacy session while a client of it is attached here. */
interface Local {
  readonly claims: SessionClaims;
  readonly key: string;
  /** Whom the session counts against (Call.holder), for `maxSessionsPerCaller`. */
  readonly holder: string;
  /**
   * compose: the caller as the front door checked them on the stream a client reads here (the
   * latest), carried on the standalone stream the gateway opens for the session, so a virtual
   * server merges the streams of the members whose rule lets them in.
   */
  checked: StampedCaller | undefined;
  clients: number;
  /** This replica is the session's owner (the log's `producer`): it reads the upstream's standalone stream. */
  owner: boolean;
  /** The session's claims with its upstream placement, once it initialized. */
  routed: SessionClaims | undefined;
  /** The upstream's standalone stream being read; `none` when the upstream has none. */
  pump: UpstreamResponse['body'] | 'starting' | 'none' | undefined;
  pumpRetryAt: number;
  /** The upstream's last event id on its standalone stream, where reading it resumes. */
  upstreamEventId: string;
  nextCheckAt: number;
  touchedAt: number;
  timer: NodeJS.Timeout | undefined;
}

const ACCEPT_BOTH = 'application/json, text/event-stream';
/** Names a member's policy hides on a standalone stream belong to no request: not reported. */
const unreported = (): void => {};
/** The owner named by a session nobody reads any more (no node id looks like it). */
const RELEASED = '~released';
const CHECK_EVERY_MS = 1_000;
const RECLAIM_MS = 5 * CHECK_EVERY_MS;
/** How long a session's initialize may hold its claim (a replica that died mid-way frees it then). */
const CLAIM_MS = 60_000;

class LegacySessions {
  readonly #gw: GatewayContext;
  readonly #local = new Map<string, Local>();
  /** New sessions per holder between their check and their Local (see onSse). */
  readonly #opening = new HolderCounts();

  constructor(gw: GatewayContext) {
    this.#gw = gw;
  }

  async onSse(request: McpRequest, call: Call): ReturnType<Step> {
    call.method = 'GET';
    serverOf(this.#gw, request);
    checkAccept(request, 'get');
    const lastEventId = headerValue(request.headers['last-event-id']);
    if (lastEventId) {
      const dot = lastEventId.lastIndexOf('.');
      const seq = Number(lastEventId.slice(dot + 1));
      if (dot <= 0 || !Number.isSafeInteger(seq) || seq < 0) throw this.#gone('Last-Event-ID is not an event id this gateway issued');
      const token = lastEventId.slice(0, dot);
      const claims = await openSession(this.#gw, request, token, call);
      if (claims.upstream !== '') throw this.#gone('Last-Event-ID is not an event id this gateway issued');
      const info = await this.#gw.hub.log.info(legacyKey(claims.id)).catch(() => undefined);
      if (!info) throw this.#gone('the session stream is unknown or expired');
      return { write: (res) => this.#attach(res, token, claims, seq, true, call) };
    }
    const claims: SessionClaims = {
      id: SessionSealer.newId(),
      server: request.params.server,
      // No placement yet: it is decided by initialize and kept in the route store.
      upstream: '',
      upstreamSession: '',
      node: '',
      principal: call.caller?.id ?? '',
      protocolVersion: LEGACY_REVISION,
      issuedAt: Math.floor(Date.now() / 1000),
    };
    call.session = claims.id;
    const token = this.#gw.sealer.seal(claims);
    // Each new stream is a session the log and this replica keep: capped per caller like the
    // upstream sessions it leads to, its place taken before the first await.
    const server = this.#gw.config.servers[request.params.server]!;
    if (this.#sessionsOf(call.holder) >= server.maxSessionsPerCaller) {
      throw new GatewayError('MCPGW_ERR_CALLER_CAPACITY', `server "${server.name}": ${server.maxSessionsPerCaller} open 2024-11-05 sessions (maxSessionsPerCaller)`);
    }
    this.#opening.add(call.holder);
    const opened = () => this.#opening.remove(call.holder);
    let seq: number;
    try {
      seq = await SessionFeed.open(this.#gw.hub, legacyKey(claims.id), { producer: this.#gw.hub.opts.node, kind: 'get', requests: '' });
    } catch (err) {
      opened();
      throw new GatewayError('MCPGW_ERR_EVENT_LOG_UNAVAILABLE', (err as Error).message, { cause: err });
    }
    // The place passes from #opening to the session's Local in one step.
    return {
      write: (res) => {
        opened();
        this.#attach(res, token, claims, seq, false, call);
      },
    };
  }

  async onMessage(request: McpRequest, call: Call): ReturnType<Step> {
    const upstream = serverOf(this.#gw, request);
    const body = request.body;
    if (!body || body.length === 0) throw new GatewayError('MCPGW_ERR_PARSE', 'empty body');
    const incoming = parseBody(body);
    const messages = incoming.batch ? incoming.messages : [incoming.message];
    const first = messages[0]!;
    Object.assign(call, { messages, id: incoming.batch ? null : first.id, method: methodLabel(first.method) });
    if (!incoming.batch && first.method === 'tools/call' && typeof first.params?.name === 'string') call.tool = first.params.name;
    const token = (request.query as { sessionId?: unknown }).sessionId;
    if (typeof token !== 'string' || !token) throw new GatewayError('MCPGW_ERR_SESSION_REQUIRED', 'send the sessionId query parameter of the endpoint event');
    const claims = await openSession(this.#gw, request, token, call);
    // A Streamable HTTP session id is not a legacy one (and the other way round).
    if (claims.upstream !== '') throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND');
    const piped = (sent: readonly Envelope[], protocolVersion: string | undefined): PipelineRequest => ({
      server: request.params.server,
      principal: call.caller?.id,
      holder: call.holder,
      messages: sent,
      door: 'legacy',
      // compose: the caller goes with the door's own headers, for a virtual server's member policies.
      headers: stampPrincipal(legacyHeaders(protocolVersion), stampedCaller(call)),
      batch: incoming.batch,
      protocolVersion: protocolVersion ?? LEGACY_REVISION,
      session: claims.id,
    });
    if (!incoming.batch && first.method === 'initialize') return this.#initialize(upstream, claims, first, call, piped(messages, undefined));
    if (messages.some((m) => m.method === 'initialize')) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'initialize must not be batched');
    const routed = await this.#route(claims);
    if (!routed) throw new GatewayError('MCPGW_ERR_NOT_INITIALIZED');
    if (incoming.batch && !allowsBatch(routed.protocolVersion)) throw new GatewayError('MCPGW_ERR_BATCH_NOT_SUPPORTED', `protocol revision ${routed.protocolVersion}`);
    // auth: the same per-item policy as on /mcp/<server> (src/auth/guard.ts).
    const policy = call.caller && this.#gw.auth?.policy(request.params.server);
    const guard = policy?.filtersItems ? guardRequest(policy, call.caller!, messages) : undefined;
    if (guard) call.hidden = guard.hidden;
    // pipeline: the chain (src/pipeline/); on the time limit's expiry the answer is the error, on
    // the session stream, and the upstream is told notifications/cancelled.
    const req = { ...piped(guard?.messages ?? messages, routed.protocolVersion), replica: routed.upstream, masked: guard !== undefined && guard.masks.length > 0 };
    let res: UpstreamResponse;
    try {
      res = await withSession(this.#gw, routed, () => this.#gw.pipeline.run(req, sessionExchange(upstream, routed, req.headers, req.protocolVersion)));
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'MCPGW_ERR_SESSION_NOT_FOUND') void this.#end(claims, routed);
      if (err instanceof GatewayError && err.code === 'MCPGW_ERR_UPSTREAM_TIMEOUT' && !incoming.batch) return this.#failAnswer(routed, err, first.id, call);
      throw err;
    }
    if (guard) res = await guardResponse(res, guard);
    return this.#deliver(upstream, routed, res, messages, guard, call);
  }

  /** A request that failed before its answer came (its time limit): the error is its answer, on the session stream. */
  async #failAnswer(routed: SessionClaims, err: GatewayError, id: JsonRpcId, call: Call): ReturnType<Step> {
    const feed = new SessionFeed(this.#gw.hub, legacyKey(routed.id));
    feed.push(errorBody(err, id));
    call.failed(err.code);
    await feed.flushed();
    return { res: ACCEPTED };
  }

  /** Sessions a holder has here: attached, or being opened. */
  #sessionsOf(holder: string): number {
    let n = this.#opening.of(holder);
    for (const local of this.#local.values()) if (local.holder === holder) n++;
    return n;
  }

  /** Shutdown: the sessions owned here are let go at once, for the replicas their clients resume on. */
  async close(): Promise<void> {
    const releases: Promise<unknown>[] = [];
    for (const local of this.#local.values()) {
      clearTimeout(local.timer);
      this.#stopPump(local);
      if (local.owner) releases.push(this.#gw.hub.log.claim(local.key, this.#gw.hub.opts.node, RELEASED).catch(() => false));
    }
    this.#local.clear();
    await Promise.all(releases);
  }

  async #initialize(upstream: Upstream, claims: SessionClaims, init: Envelope, call: Call, piped: PipelineRequest): ReturnType<Step> {
    if (init.kind !== 'request') throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'initialize must be a request with an id');
    const remaining = claims.issuedAt * 1000 + this.#gw.config.session.maxLifetimeMs - Date.now();
    // The session's one initialize is taken before anything is awaited: concurrent ones (on this
    // replica or another) are refused instead of each opening an upstream session of its own.
    const claimed = await this.#gw.legacyRoutes.claim(claims.id, Math.min(remaining, CLAIM_MS)).catch((err: unknown) => {
      throw new GatewayError('MCPGW_ERR_EVENT_LOG_UNAVAILABLE', (err as Error).message, { cause: err });
    });
    if (!claimed) throw new GatewayError('MCPGW_ERR_ALREADY_INITIALIZED', 'this session is initialized, or its initialize is under way');
    const asked = typeof init.params?.protocolVersion === 'string' ? init.params.protocolVersion : LEGACY_REVISION;
    let answer: string[];
    let result: { protocolVersion?: unknown } | undefined;
    try {
      let placement: SessionPlacement | undefined;
      const response = await this.#gw.pipeline.run(piped, {
        upstream,
        send: async (req) => {
          const opened = await upstream.initialize(req, claims.id, call.holder);
          placement = opened.placement;
          return opened.response;
        },
      });
      answer = await collectMessages(response, (m) => answers(m, init.id));
      result = answer.map((text) => JSON.parse(text) as { id?: unknown; result?: { protocolVersion?: unknown } }).find((m) => m.result && answers(m, init.id))?.result;
      if (result && placement) {
        const routed: SessionClaims = { ...claims, ...placement, protocolVersion: typeof result.protocolVersion === 'string' ? result.protocolVersion : asked };
        await this.#gw.legacyRoutes.put(claims.id, this.#gw.sealer.seal(routed), remaining);
        const local = this.#local.get(claims.id);
        if (local) local.routed = routed;
      }
    } finally {
      if (!result) await this.#gw.legacyRoutes.release(claims.id).catch(() => {});
    }
    // The answer goes out after the route is known, so whoever reads it can reach the upstream.
    const feed = new SessionFeed(this.#gw.hub, legacyKey(claims.id));
    for (const m of answer) feed.push(m);
    // accounting: the POST was answered 202; what the client gets is what went into its stream.
    if (!result) noteFailures(answer, call);
    await feed.flushed();
    return { res: ACCEPTED };
  }

  /**
   * Sends an upstream answer down the session stream; the POST itself is answered 202 at once,
   * and accounted by the answer it fed into the stream (an SSE answer once it has passed).
   */
  async #deliver(upstream: Upstream, routed: SessionClaims, res: UpstreamResponse, messages: readonly Envelope[], guard: GuardPlan | undefined, call: Call): ReturnType<Step> {
    if (res.body === null) return { res: res.status >= 300 ? res : ACCEPTED };
    const feed = new SessionFeed(this.#gw.hub, legacyKey(routed.id));
    if (isSse(res)) {
      const unanswered = new Map(messages.filter((m) => m.kind === 'request').map((m) => [idKey(m.id), m.id]));
      // The server's time limit bounds how long its silence is polled (SEP-1699).
      const polls = new PollSchedule(this.#gw.config.servers[routed.server]!.timeout.idleMs);
      this.#pumpAnswer(upstream, routed, res.body, feed, guard, { unanswered, polls, upstreamId: '', reopened: false, sink: call.awaitAnswer() });
      return { res: ACCEPTED };
    }
    let text: string;
    try {
      text = await readText(res.body);
    } catch (err) {
      // pipeline: a JSON answer that stopped arriving within its time limit, or broke off: the
      // request was taken (the POST's 202 is due), its error goes on the session stream.
      const single = messages.length === 1 && messages[0]!.kind === 'request';
      if (single && err instanceof GatewayError && (err.code === 'MCPGW_ERR_UPSTREAM_TIMEOUT' || err.code === 'MCPGW_ERR_STREAM_LOST')) return this.#failAnswer(routed, err, messages[0]!.id, call);
      throw err;
    }
    let parts: string[];
    try {
      parts = splitJson(text);
    } catch {
      // Not JSON-RPC: the upstream's HTTP error is the POST's answer.
      return { res: { ...res, body: text } };
    }
    const pending = { unanswered: new Map(messages.filter((m) => m.kind === 'request').map((m) => [idKey(m.id), m.id])), sink: call };
    for (const m of parts) if (noteAnswer(pending, m) !== 'stray') feed.push(m);
    return { res: ACCEPTED };
  }

  /**
   * Streams one SSE answer into the session stream. One that ends before every request of it is
   * answered — broken, or ended by an upstream that has its clients poll (SEP-1699) — is asked
   * for again at the upstream's last event id, when src/upstream/polling.ts says, and what the
   * upstream sends again is filtered for the caller like the first part (auth). When it cannot
   * be, each request still unanswered gets MCPGW_ERR_STREAM_LOST: the client never waits for nothing.
   */
  #pumpAnswer(upstream: Upstream, routed: SessionClaims, body: Readable, feed: SessionFeed, guard: GuardPlan | undefined, answer: AnswerStream): void {
    answer.polls.opened();
    let done = false;
    readSseEvents(
      body,
      (e) => {
        if (done) return;
        if (e.id) answer.upstreamId = e.id;
        if (!e.data) return;
        const data = e.data.replace(/\n/g, '');
        const note = noteAnswer(answer, data);
        // A response to no request of this POST is not the client's (it may name another one's id).
        if (note === 'stray') return;
        feed.push(data);
        answer.polls.message();
        if (note !== 'answer' || answer.unanswered.size > 0) return;
        // Every request is answered. A resumed stream may be held open after that (the SDK does).
        done = true;
        answer.sink.settled();
        if (answer.reopened) discard(body);
        else drain(body);
      },
      () => {
        if (answer.unanswered.size === 0) {
          // Nothing to answer (or answered above): the answer is over.
          if (!done) answer.sink.settled();
          return;
        }
        const wait = answer.upstreamId ? answer.polls.next() : undefined;
        if (wait === undefined) return lostAnswers(feed, answer);
        setTimeout(() => void this.#pollAnswer(upstream, routed, feed, guard, answer).catch(() => lostAnswers(feed, answer)), wait).unref();
      },
      (ms) => answer.polls.retry(ms),
    );
  }

  async #pollAnswer(upstream: Upstream, routed: SessionClaims, feed: SessionFeed, guard: GuardPlan | undefined, answer: AnswerStream): Promise<void> {
    // The gateway's own request: what it asks for again was admitted when it came.
    const again = await upstream.get(routed, legacyRequest(routed.protocolVersion, [], false, GATEWAY_ORIGINATED), answer.upstreamId).catch(() => undefined);
    if (again && again.status === 200 && isSse(again)) {
      const rest = guard ? await guardStream(again.body, guard).catch(() => undefined) : again.body;
      if (rest) return this.#pumpAnswer(upstream, routed, rest, feed, guard, { ...answer, reopened: true });
    }
    if (again?.body && typeof again.body !== 'string') discard(again.body);
    lostAnswers(feed, answer);
  }

  #attach(res: ServerResponse, token: string, claims: SessionClaims, afterSeq: number, resumed: boolean, call: Call): void {
    let local = this.#local.get(claims.id);
    const checked = { principal: call.caller, holder: call.holder, hid: unreported };
    if (local) {
      local.checked = checked;
    } else {
      local = { claims, key: legacyKey(claims.id), holder: call.holder, checked, clients: 0, owner: !resumed, routed: undefined, pump: undefined, pumpRetryAt: 0, upstreamEventId: '', nextCheckAt: 0, touchedAt: Date.now(), timer: undefined };
      this.#local.set(claims.id, local);
    }
    const here = local;
    here.clients++;
    clearTimeout(here.timer);
    res.once('close', () => this.#leave(here));
    void tailSession(this.#gw.hub, res, {
      key: here.key,
      streamId: token,
      afterSeq,
      resumed,
      // Relative, so it resolves under any path prefix a proxy adds.
      prelude: `retry: ${this.#gw.config.events.retryMs}\nevent: endpoint\ndata: messages?sessionId=${token}\n\n`,
      tick: (events) => this.#tick(here, events, res),
    });
  }

  /** Looks after the session while a client reads it here: ownership, the standalone stream, the log's lifetime. */
  async #tick(local: Local, events: readonly LoggedEvent[], res: ServerResponse): Promise<void> {
    if (res.destroyed || res.writableEnded) return;
    // A reload removed the server (Gateway.reconfigure): its sessions end with it, their next message is 404.
    if (!this.#gw.servers.has(local.claims.server)) return void res.end();
    for (const e of events) {
      if (e.end) return;
      if (e.upstreamId) local.upstreamEventId = e.upstreamId;
    }
    const now = Date.now();
    const log = this.#gw.hub.log;
    // An idle session must not expire from the log while its client still reads it.
    if (now - local.touchedAt > this.#gw.config.events.ttlMs / 3) {
      local.touchedAt = now;
      new SessionFeed(this.#gw.hub, local.key).mark();
    }
    if (!local.owner && now >= local.nextCheckAt) {
      local.nextCheckAt = now + CHECK_EVERY_MS;
      const info = await log.info(local.key);
      if (!info) return void res.end();
      if (res.destroyed) return;
      const node = this.#gw.hub.opts.node;
      // The owner left (released the session) or died: the replica its client is on now takes over.
      if (info.producer === node || ((info.producer === RELEASED || !(await log.alive(info.producer))) && (await log.claim(local.key, info.producer, node)))) local.owner = true;
    }
    if (local.owner && local.pump === undefined && now >= local.pumpRetryAt) {
      local.routed ??= await this.#route(local.claims);
      // Not awaited: the session's stream goes on while the upstream takes its time to answer
      // the GET (its headers may come only with its first event), or never does.
      if (local.routed) void this.#startPump(local, local.routed).catch(() => {});
    }
  }

  async #startPump(local: Local, routed: SessionClaims): Promise<void> {
    local.pump = 'starting';
    const upstream = this.#gw.servers.get(routed.server)!;
    let res: UpstreamResponse;
    try {
      // pipeline: its notifications invalidate the server's cache (src/pipeline/cache.ts).
      const req = legacyRequest(routed.protocolVersion, [], false, GATEWAY_ORIGINATED);
      stampPrincipal(req.headers, local.checked);
      res = this.#gw.pipeline.watch(routed.server, await upstream.get(routed, req, local.upstreamEventId || undefined));
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'MCPGW_ERR_SESSION_NOT_FOUND') return this.#end(local.claims, routed);
      local.pump = undefined;
      local.pumpRetryAt = Date.now() + CHECK_EVERY_MS;
      return;
    }
    if (local.pump !== 'starting') {
      // The session was let go meanwhile.
      if (res.body && typeof res.body !== 'string') discard(res.body);
      return;
    }
    if (res.status !== 200 || !isSse(res)) {
      if (res.body && typeof res.body !== 'string') discard(res.body);
      // 405: no standalone stream, every message comes with an answer. Else (409 while the
      // previous owner's stream is still open upstream) try again.
      local.pump = res.status === 405 ? 'none' : undefined;
      local.pumpRetryAt = Date.now() + CHECK_EVERY_MS;
      return;
    }
    const body = res.body;
    local.pump = body;
    const feed = new SessionFeed(this.#gw.hub, local.key);
    readSseEvents(
      body,
      (e) => {
        if (e.id) local.upstreamEventId = e.id;
        if (e.data) feed.push(e.data.replace(/\n/g, ''), e.id ?? '');
        else if (e.id) feed.mark(e.id);
      },
      () => {
        // Ended or broke: read it again (resuming at its last id) on the next check.
        if (local.pump !== body) return;
        local.pump = undefined;
        local.pumpRetryAt = Date.now() + CHECK_EVERY_MS;
      },
    );
  }

  #stopPump(local: Local): void {
    const pump = local.pump;
    local.pump = undefined;
    if (pump && typeof pump === 'object') pump.destroy();
  }

  /**
   * The last client here left. After `events.detachedGrace` the owner lets the session go (a
   * replica where the client came back takes it over); if nobody did after another grace
   * period (5 s at least), nobody reads the session any more and it ends.
   */
  #leave(local: Local): void {
    if (--local.clients > 0) return;
    const grace = this.#gw.config.events.detachedGraceMs;
    local.timer = setTimeout(() => {
      if (local.clients > 0) return;
      this.#stopPump(local);
      if (!local.owner) return void this.#local.delete(local.claims.id);
      local.owner = false;
      void this.#gw.hub.log.claim(local.key, this.#gw.hub.opts.node, RELEASED).catch(() => false);
      // Long enough for any replica its client reads from to notice (it checks every second).
      local.timer = setTimeout(() => {
        if (local.clients > 0) return;
        this.#local.delete(local.claims.id);
        void this.#gw.hub.log
          .info(local.key)
          .then(async (info) => {
            if (info?.producer === RELEASED) await this.#end(local.claims, local.routed ?? (await this.#route(local.claims)));
          })
          .catch(() => {});
      }, Math.max(grace, RECLAIM_MS));
      local.timer.unref();
    }, grace);
    local.timer.unref();
  }

  /** The session is over: its stream ends for every client, its upstream session is closed. */
  async #end(claims: SessionClaims, routed: SessionClaims | undefined): Promise<void> {
    const local = this.#local.get(claims.id);
    if (local) {
      clearTimeout(local.timer);
      this.#stopPump(local);
      this.#local.delete(claims.id);
    }
    const feed = new SessionFeed(this.#gw.hub, legacyKey(claims.id));
    feed.end();
    await feed.flushed();
    const upstream = routed && this.#gw.servers.get(routed.server);
    await upstream?.delete(routed!, legacyRequest(routed!.protocolVersion, [], false, GATEWAY_ORIGINATED)).catch(() => undefined);
    await this.#gw.endSession(routed ?? claims);
  }

  async #route(claims: SessionClaims): Promise<SessionClaims | undefined> {
    const sealed = await this.#gw.legacyRoutes.get(claims.id);
    const routed = sealed ? this.#gw.sealer.open(sealed) : undefined;
    return routed && routed.id === claims.id ? routed : undefined;
  }

  #gone(detail: string): GatewayError {
    this.#gw.hub.emit('resume', { outcome: 'miss' });
    return new GatewayError('MCPGW_ERR_EVENTS_GONE', detail);
  }
}

const ACCEPTED: UpstreamResponse = { status: 202, headers: {}, body: null };

/** One POST's SSE answer while it is read, over every stream the upstream sends it on. */
interface AnswerStream {
  /** The requests not answered yet, by idKey. */
  readonly unanswered: Map<string, JsonRpcId>;
  readonly polls: PollSchedule;
  /** The upstream's last event id: where the rest is asked for. */
  upstreamId: string;
  /** accounting: told each failed answer, and when the answer is over. */
  readonly sink: AnswerSink;
  /** The stream read now is a resumption (a GET, which the upstream may hold open after the answer). */
  readonly reopened: boolean;
}

/** Marks a request answered when `data` is its response, and tells the sink when it failed (one parse, only when it can be a response): `answer`, `stray` (a response to no request of this POST) or `other`. */
function noteAnswer(answer: Pick<AnswerStream, 'unanswered' | 'sink'>, data: string): 'answer' | 'stray' | 'other' {
  const parsed = parseAnswer(data);
  if (parsed === undefined) return 'other';
  const response = parsed.response;
  // An answer to an id this POST did not send, or sent already: not the client's.
  if (response && !answer.unanswered.delete(idKey(response.id))) return 'stray';
  // accounting: what the client gets is what went into its stream (the same parse says it).
  const failure = responseFailure(parsed.message);
  if (failure !== undefined) answer.sink.failed(failure);
  return response ? 'answer' : 'other';
}

function lostAnswers(feed: SessionFeed, answer: AnswerStream): void {
  const lost = new GatewayError('MCPGW_ERR_STREAM_LOST');
  for (const id of answer.unanswered.values()) feed.push(errorBody(lost, id));
  answer.sink.settled(lost.code);
}

/** accounting: the first failed answer among messages the client gets on its session stream. */
function noteFailures(texts: readonly string[], sink: AnswerSink): void {
  for (const text of texts) {
    const failure = textFailure(text);
    if (failure !== undefined) return sink.failed(failure);
  }
}

/** The log stream of a legacy session (one per session). */
function legacyKey(session: string): string {
  return `${session}:legacy`;
}

/** What the upstream side needs of a legacy client's message; it sent no MCP headers of its own. */
function legacyHeaders(protocolVersion: string | undefined): Record<string, string> {
  const headers: Record<string, string> = { accept: ACCEPT_BOTH, 'content-type': 'application/json' };
  if (protocolVersion) headers['mcp-protocol-version'] = protocolVersion;
  return headers;
}

/** A request the gateway writes itself on a legacy session (see legacyHeaders). */
function legacyRequest(protocolVersion: string, messages: readonly Envelope[], batch: boolean, admission: GatewayOriginated): ClientRequest {
  return clientRequest(legacyHeaders(protocolVersion), messages, batch, protocolVersion, admission);
}
