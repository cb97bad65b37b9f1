import type { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { guardRequest, guardResponse, guardStream, type GuardPlan } from '../auth/guard.ts';
import { errorBody, GatewayError, type JsonRpcId } from '../errors.ts';
import { SessionFeed } from '../events/session-stream.ts';
import { methodLabel } from '../ops/metrics.ts';
import { responseFailure, textFailure, type AnswerSink } from '../protocol/answers.ts';
import { envelope, idKey, parseBody, type Envelope } from '../protocol/jsonrpc.ts';
import { GATEWAY_ORIGINATED, type Admitted } from '../pipeline/admission.ts';
import type { PipelineRequest } from '../pipeline/request.ts';
import { allowsBatch, LEGACY_REVISION } from '../protocol/revisions.ts';
import { SessionSealer, type SessionClaims } from '../session/token.ts';
import { headerValue } from '../protocol/headers.ts';
import { answers, collectMessages, isSse, readSseEvents, readText, splitJson } from '../upstream/messages.ts';
import type { ClientRequest, Upstream, UpstreamResponse } from '../upstream/types.ts';
import type { GatewayContext } from './context.ts';
import { checkAccept, handle, openSession, serverOf, withSession, type Call, type McpRequest, type Step } from './mcp.ts';
import { discard, drain } from '../upstream/body.ts';
import { LegacySessions, legacyKey, legacyRequest } from './legacy-sessions.ts';
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
  const sessions = new LegacySessions(gw);
  const legacy = new LegacyDoor(gw, sessions);
  const onSse: Step = (_gw, request, call) => legacy.onSse(request, call);
  const onMessage: Step = (_gw, request, call) => legacy.onMessage(request, call);
  app.get<{ Params: { server: string } }>('/mcp/:server/sse', (request, reply) => handle(gw, request as McpRequest, reply, onSse));
  app.post<{ Params: { server: string }; Body: Buffer | undefined }>('/mcp/:server/messages', (request, reply) => handle(gw, request, reply, onMessage));
  app.addHook('onClose', async () => sessions.close());
}

/** How long a session's initialize may hold its claim (a replica that died mid-way frees it then). */
const CLAIM_MS = 60_000;

/** The door's two routes: the session stream (onSse) and the messages POSTed to it (onMessage). */
class LegacyDoor {
  readonly #gw: GatewayContext;
  /** The sessions this replica looks after (src/http/legacy-sessions.ts). */
  readonly #sessions: LegacySessions;

  constructor(gw: GatewayContext, sessions: LegacySessions) {
    this.#gw = gw;
    this.#sessions = sessions;
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
      return { write: (res) => this.#sessions.attach(res, token, claims, seq, true, call.holder) };
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
    if (this.#sessions.sessionsOf(call.holder) >= server.maxSessionsPerCaller) {
      throw new GatewayError('MCPGW_ERR_CALLER_CAPACITY', `server "${server.name}": ${server.maxSessionsPerCaller} open 2024-11-05 sessions (maxSessionsPerCaller)`);
    }
    this.#sessions.opening.add(call.holder);
    const opened = () => this.#sessions.opening.remove(call.holder);
    let seq: number;
    try {
      seq = await SessionFeed.open(this.#gw.hub, legacyKey(claims.id), { producer: this.#gw.hub.opts.node, kind: 'get', requests: '' });
    } catch (err) {
      opened();
      throw new GatewayError('MCPGW_ERR_EVENT_LOG_UNAVAILABLE', (err as Error).message, { cause: err });
    }
    // The place passes from the opening count to the session's Local in one step.
    return {
      write: (res) => {
        opened();
        this.#sessions.attach(res, token, claims, seq, false, call.holder);
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
    const piped: PipelineRequest = { server: request.params.server, principal: call.caller?.id, holder: call.holder, messages, door: 'legacy' };
    // pipeline: rate limits per principal, server and tool, before anything reaches an upstream.
    const admitted = await this.#gw.limit.admit(piped);
    const token = (request.query as { sessionId?: unknown }).sessionId;
    if (typeof token !== 'string' || !token) throw new GatewayError('MCPGW_ERR_SESSION_REQUIRED', 'send the sessionId query parameter of the endpoint event');
    const claims = await openSession(this.#gw, request, token, call);
    // A Streamable HTTP session id is not a legacy one (and the other way round).
    if (claims.upstream !== '') throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND');
    if (!incoming.batch && first.method === 'initialize') return this.#initialize(upstream, claims, first, call, admitted);
    if (messages.some((m) => m.method === 'initialize')) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'initialize must not be batched');
    const routed = await this.#route(claims);
    if (!routed) throw new GatewayError('MCPGW_ERR_NOT_INITIALIZED');
    if (incoming.batch && !allowsBatch(routed.protocolVersion)) throw new GatewayError('MCPGW_ERR_BATCH_NOT_SUPPORTED', `protocol revision ${routed.protocolVersion}`);
    // auth: the same per-item policy as on /mcp/<server> (src/auth/guard.ts).
    const policy = call.caller && this.#gw.auth?.policy(request.params.server);
    const guard = policy?.filtersItems ? guardRequest(policy, call.caller!, messages) : undefined;
    if (guard) call.hidden = guard.hidden;
    // pipeline: the time limit; on expiry the answer is the error, on the session stream, and the
    // upstream is told notifications/cancelled.
    const timed = this.#gw.deadlines.start(piped, (reason) => this.#cancelUpstream(upstream, routed, first.id, reason));
    const req = legacyRequest(routed.protocolVersion, guard?.messages ?? messages, incoming.batch, admitted, timed?.signal);
    let res: UpstreamResponse;
    try {
      const pending = withSession(this.#gw, routed, () => upstream.post(routed, req));
      res = timed ? await timed.response(pending) : await pending;
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'MCPGW_ERR_SESSION_NOT_FOUND') void this.#end(claims, routed);
      if (err instanceof GatewayError && timed?.signal.aborted) return this.#failAnswer(routed, err, first.id, call);
      throw err;
    }
    if (guard) res = await guardResponse(res, guard);
    return this.#deliver(upstream, routed, req, res, messages, guard, call);
  }

  /** A request that failed before its answer came (its time limit): the error is its answer, on the session stream. */
  async #failAnswer(routed: SessionClaims, err: GatewayError, id: JsonRpcId, call: Call): ReturnType<Step> {
    const feed = new SessionFeed(this.#gw.hub, legacyKey(routed.id));
    feed.push(errorBody(err, id));
    call.failed(err.code);
    await feed.flushed();
    return { res: ACCEPTED };
  }

  /** Tells the upstream to stop working on a request nobody waits for any more (the gateway's own message). */
  #cancelUpstream(upstream: Upstream, routed: SessionClaims, id: JsonRpcId, reason: string): void {
    const note = envelope({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } });
    upstream.post(routed, legacyRequest(routed.protocolVersion, [note], false, GATEWAY_ORIGINATED)).then(
      (res) => {
        if (res.body && typeof res.body !== 'string') drain(res.body);
      },
      () => {},
    );
  }

  async #initialize(upstream: Upstream, claims: SessionClaims, init: Envelope, call: Call, admitted: Admitted): ReturnType<Step> {
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
      const { response, placement } = await upstream.initialize(legacyRequest(undefined, [init], false, admitted), claims.id, call.holder);
      answer = await collectMessages(response, (m) => answers(m, init.id));
      result = answer.map((text) => JSON.parse(text) as { id?: unknown; result?: { protocolVersion?: unknown } }).find((m) => m.result && answers(m, init.id))?.result;
      if (result) {
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
  async #deliver(upstream: Upstream, routed: SessionClaims, req: ClientRequest, res: UpstreamResponse, messages: readonly Envelope[], guard: GuardPlan | undefined, call: Call): ReturnType<Step> {
    if (res.body === null) return { res: res.status >= 300 ? res : ACCEPTED };
    const feed = new SessionFeed(this.#gw.hub, legacyKey(routed.id));
    if (isSse(res)) {
      const unanswered = new Map(messages.filter((m) => m.kind === 'request').map((m) => [idKey(m.id), m.id]));
      // The server's time limit bounds how long its silence is polled (SEP-1699).
      const polls = new PollSchedule(this.#gw.config.servers[routed.server]!.timeout.idleMs);
      this.#pumpAnswer(upstream, routed, req, res.body, feed, guard, { unanswered, polls, upstreamId: '', reopened: false, sink: call.awaitAnswer() });
      return { res: ACCEPTED };
    }
    let text: string;
    try {
      text = await readText(res.body);
    } catch (err) {
      // pipeline: a JSON answer that stopped arriving within its time limit.
      const single = messages.length === 1 && messages[0]!.kind === 'request';
      if (single && err instanceof GatewayError && err.code === 'MCPGW_ERR_UPSTREAM_TIMEOUT') return this.#failAnswer(routed, err, messages[0]!.id, call);
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
  #pumpAnswer(upstream: Upstream, routed: SessionClaims, req: ClientRequest, body: Readable, feed: SessionFeed, guard: GuardPlan | undefined, answer: AnswerStream): void {
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
        setTimeout(() => void this.#pollAnswer(upstream, routed, req, feed, guard, answer).catch(() => lostAnswers(feed, answer)), wait).unref();
      },
      (ms) => answer.polls.retry(ms),
    );
  }

  async #pollAnswer(upstream: Upstream, routed: SessionClaims, req: ClientRequest, feed: SessionFeed, guard: GuardPlan | undefined, answer: AnswerStream): Promise<void> {
    const again = await upstream.get(routed, req, answer.upstreamId).catch(() => undefined);
    if (again && again.status === 200 && isSse(again)) {
      const rest = guard ? await guardStream(again.body, guard).catch(() => undefined) : again.body;
      if (rest) return this.#pumpAnswer(upstream, routed, req, rest, feed, guard, { ...answer, reopened: true });
    }
    if (again?.body && typeof again.body !== 'string') discard(again.body);
    lostAnswers(feed, answer);
  }

  // The session manager's, as the POST path reaches them.
  #route(claims: SessionClaims): Promise<SessionClaims | undefined> {
    return this.#sessions.route(claims);
  }

  #end(claims: SessionClaims, routed: SessionClaims | undefined): Promise<void> {
    return this.#sessions.end(claims, routed);
  }

  get #local(): ReadonlyMap<string, { routed: SessionClaims | undefined }> {
    return this.#sessions.local;
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
  if (!data.includes('"result"') && !data.includes('"error"')) return 'other';
  let m: { id?: unknown; method?: unknown } | null;
  try {
    m = JSON.parse(data) as typeof m;
  } catch {
    return 'other'; // not JSON: not an answer
  }
  const response = m !== null && typeof m === 'object' && !Array.isArray(m) && m.method === undefined && m.id !== undefined;
  // An answer to an id this POST did not send, or sent already: not the client's.
  if (response && !answer.unanswered.delete(idKey(m!.id))) return 'stray';
  // accounting: what the client gets is what went into its stream (the same parse says it).
  const failure = responseFailure(m);
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
