import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { guardRequest, guardResponse, guardStream, restoreGuard, serializeGuard } from '../auth/guard.ts';
import { errorBody, errorsBody, GatewayError, type JsonRpcId } from '../errors.ts';
import { methodLabel } from '../ops/metrics.ts';
import { requestLogFields } from '../ops/requests.ts';
import { contentLength, readJsonAnswer, textFailure, type AnswerSink } from '../protocol/answers.ts';
import { parseBody, requestIds, type Envelope } from '../protocol/jsonrpc.ts';
import { allowsBatch, DEFAULT_SESSION_REVISION, isSessionRevision, primes } from '../protocol/revisions.ts';
import { SessionSealer, type SessionClaims } from '../session/token.ts';
import { headerValue } from '../protocol/headers.ts';
import type { PreparedResume, Reopen, StreamHub } from '../events/hub.ts';
// stateless: revision 2026-07-28 (src/http/stateless.ts).
import { isListenRequest, isStatelessRequest, rejectUnmarked } from '../protocol/stateless.ts';
import { onStatelessPost, statelessNotAllowed, translatedReopen, translatedSessionGet, translatedSessionPost } from './stateless.ts';
import { initializeTranslated, isTranslatedSession } from '../translate/to-stateless.ts';
import { clientRequest, type SessionPlacement, type Upstream, type UpstreamResponse } from '../upstream/types.ts';
import { GATEWAY_ORIGINATED } from '../pipeline/admission.ts';
import { sessionExchange } from '../pipeline/exchange.ts';
import type { PipelineRequest } from '../pipeline/request.ts';
import type { GatewayContext } from './context.ts';
import { discard } from '../upstream/body.ts';
import { Call } from './accounting.ts';
import { stampPrincipal, type Principal, type StampedCaller } from '../auth/principal.ts';
import type { McpParams as Params, McpRequest } from './request.ts';
import type { StreamContext, Step } from './step.ts';

// legacy: for the 2024-11-05 routes (src/http/legacy-sse.ts), which run through handle().
export type { Call, McpRequest, Step };

/**
 * MCP Streamable HTTP (2025-03-26 … 2025-11-25) at /mcp/<server>: check the envelope and the
 * session, hand the raw bytes to the server's upstream, stream the answer back as it comes.
 */
export function registerMcpRoutes(app: FastifyInstance, gw: GatewayContext): void {
  // stateless: a 2026-07-28 request (told by its MCP-Protocol-Version header) has its own steps.
  app.post<{ Params: Params; Body: Buffer | undefined }>('/mcp/:server', (request, reply) => handle(gw, request, reply, isStatelessRequest(request.headers) ? onStatelessPost : onPost));
  app.get<{ Params: Params }>('/mcp/:server', (request, reply) => handle(gw, request as McpRequest, reply, isStatelessRequest(request.headers) ? statelessNotAllowed : onGet));
  app.delete<{ Params: Params }>('/mcp/:server', (request, reply) => handle(gw, request as McpRequest, reply, isStatelessRequest(request.headers) ? statelessNotAllowed : onDelete));
  app.route<{ Params: Params }>({
    method: ['PUT', 'PATCH'],
    url: '/mcp/:server',
    handler: (_request, reply) => sendError(reply, new GatewayError('MCPGW_ERR_METHOD_NOT_ALLOWED'), null, { allow: 'GET, POST, DELETE' }),
  });
}

/** Resolves to the reply: Fastify then knows a streamed body is on its way (see its async-handler rules). */
export async function handle(gw: GatewayContext, request: McpRequest, reply: FastifyReply, step: Step): Promise<FastifyReply> {
  const call = new Call(gw, request, performance.now());
  // stateless: a 2026-07-28 subscriptions/listen (told by its Mcp-Method header) is a long-lived stream too.
  const kind = request.method === 'GET' || isListenRequest(request.headers) ? 'stream' : 'request';
  // accounting: once the response closed and its answer is over (src/http/accounting.ts).
  gw.track(reply.raw, kind, () => call.closed(reply.raw.statusCode, reply.raw.writableFinished));
  try {
    // A draining replica ends its streams: a new one would be cut at once, so it is opened elsewhere.
    if (kind === 'stream' && gw.shuttingDown) throw new GatewayError('MCPGW_ERR_SHUTTING_DOWN', 'streams are opened on another replica');
    if (!gw.origins.allows(request.headers.origin)) throw new GatewayError('MCPGW_ERR_FORBIDDEN_ORIGIN', request.headers.origin);
    // auth: who is calling, and may they use this server (src/auth/authenticator.ts).
    if (gw.auth) {
      call.caller = await gw.auth.authenticate(request, request.params.server);
      call.principal = call.caller.id;
      call.holder = call.caller.id;
    }
    // compose: a virtual server's member calls check the caller against each member's policy and caps.
    stampPrincipal(request.headers, stampedCaller(call));
    // traces: the steps run in the request's trace context (src/ops/tracing.ts).
    const outcome = await (call.trace?.run(step, gw, request, call, reply) ?? step(gw, request, call, reply));
    if ('resume' in outcome) {
      reply.hijack();
      // traces: the replay, the log reads and a takeover's upstream reads are the request's.
      if (call.trace) call.trace.run(resumeStream, gw, outcome.resume, reply.raw, outcome.reopen);
      else resumeStream(gw, outcome.resume, reply.raw, outcome.reopen);
      return reply;
    }
    if ('adopt' in outcome) {
      reply.hijack();
      gw.hub.adoptStandalone(outcome.adopt, reply.raw, outcome.priming);
      return reply;
    }
    // legacy: see Outcome.
    if ('write' in outcome) {
      reply.hijack();
      outcome.write(reply.raw);
      return reply;
    }
    const { res, session, stream } = outcome;
    if (stream && relayable(res)) {
      reply.hijack();
      if (session) reply.raw.setHeader('mcp-session-id', session);
      // accounting: a POST stream's answers are read by the hub as it relays them.
      const sink = call.relayed(stream.kind === 'post' && call.method !== 'subscriptions/listen');
      const relayed = { session: stream.sessionId, server: request.params.server, kind: stream.kind, requests: stream.requests, body: res.body, res: reply.raw, priming: stream.priming, reopen: stream.reopen, json: stream.json, guard: stream.guard, sink, events: res.events };
      // traces: the stream's log writes and upstream reopens are the request's (src/events/tracing.ts).
      const key = call.trace ? call.trace.run(relayStream, gw, relayed) : gw.hub.relay(relayed);
      // pipeline: the request's time limit follows its stream from here, told of its events by
      // the hub (src/pipeline/deadline.ts; every request of this door says so: `relayed`).
      res.onStream?.(key);
      return reply;
    }
    // accounting: what the answer says, read from the text at hand, or from a JSON body as it
    // passes (a small one read whole first, and sent as the bytes that came).
    let body: UpstreamResponse['body'] | Buffer = res.body;
    if (typeof body === 'string') {
      const failure = textFailure(body);
      if (failure !== undefined) call.failed(failure);
    } else if (body !== null && !res.headers['content-type']?.startsWith('text/event-stream')) {
      // A JSON answer is judged as it is read; any other that is no stream (a DELETE's answer, the
      // SDK's empty and chunked; an error page) is read the same way, only not judged (its status
      // is all it says), so a small one goes out as the bytes at hand, not piped through Fastify's
      // reply (docs/performance.md, "a session's start and end").
      const json = res.headers['content-type']?.startsWith('application/json') === true;
      const read = readJsonAnswer(body, json ? call : NOT_JUDGED, contentLength(res.headers['content-length']));
      const whole = Buffer.isBuffer(read) ? read : await untilClientLeaves(read, body, reply.raw);
      // The client left while it came: the upstream's answer was let go, there is no one to write to.
      if (whole === undefined) return reply;
      body = whole;
    }
    // An answer at hand goes out as it is, past Fastify's reply (it has nothing to add to it).
    if (typeof body !== 'object' || body === null || Buffer.isBuffer(body)) {
      reply.hijack();
      const headers: Record<string, string | number> = session ? { ...res.headers, 'mcp-session-id': session } : { ...res.headers };
      // A bodiless answer (202, a DELETE's 200) says so by its length, as Fastify's reply did, not
      // as an empty chunked body; a 204 or 304 has no body and no length of its own (RFC 9110).
      const bodiless = res.status === 204 || res.status === 304;
      if (!bodiless) headers['content-length'] = body === null ? 0 : Buffer.byteLength(body);
      if (reply.raw.destroyed) return reply;
      reply.raw.writeHead(res.status, headers).end(bodiless || body === null ? undefined : body);
      return reply;
    }
    if (session) reply.header('mcp-session-id', session);
    reply.code(res.status).headers(res.headers);
    return reply.send(body);
  } catch (err) {
    const e = err instanceof GatewayError ? err : new GatewayError('MCPGW_ERR_INTERNAL', undefined, { cause: err });
    call.failed(e.code);
    if (e.code === 'MCPGW_ERR_INTERNAL') gw.log.error({ ...requestLogFields(request.id, request.params.server, call), err }, 'request failed');
    else if (e.status >= 500) gw.log.warn({ ...requestLogFields(request.id, request.params.server, call), code: e.code, detail: e.detail }, 'upstream failure');
    else if (e.status === 401 || e.status === 403) gw.log.debug({ ...requestLogFields(request.id, request.params.server, call), code: e.code, detail: e.detail }, 'caller refused');
    const batch = batchAnswerable(call, e);
    if (batch && !reply.sent && !reply.raw.headersSent) {
      // A batch whose answer failed once the upstream had it (cut at its time limit, broken off):
      // each of its requests gets the error under its own id, as its time limit gives them before the headers.
      reply.code(200).header('content-type', 'application/json').send(errorsBody(e, batch));
      return reply;
    }
    sendError(reply, e, call.id);
    return reply;
  }
}

/** For an answer that is not JSON: its status (counted when the response closes) is all it says. */
const NOT_JUDGED: AnswerSink = { failed: () => {}, settled: () => {} };

/** Why an answer still on its way was let go: the client it was for left. */
const CLIENT_LEFT = new Error('the client left before its answer came');

/**
 * An answer being read whole (readJsonAnswer), or undefined if the client leaves first: then the
 * upstream's answer is let go at once, not held (its connection and the replica's load) for no
 * one until its time limit.
 */
async function untilClientLeaves(read: Promise<Buffer | Readable>, body: Readable, client: ServerResponse): Promise<Buffer | Readable | undefined> {
  const leave = () => body.destroy(CLIENT_LEFT);
  if (client.destroyed) leave();
  else client.on('close', leave);
  try {
    return await read;
  } catch (err) {
    if ((err as Error).cause === CLIENT_LEFT) return undefined;
    throw err;
  } finally {
    client.off('close', leave);
  }
}

/** Errors of an answer the upstream had taken: a batch gets them for each of its requests. */
const ANSWER_FAILURES: ReadonlySet<string> = new Set(['MCPGW_ERR_UPSTREAM_TIMEOUT', 'MCPGW_ERR_STREAM_LOST']);

/** The request ids of a batch (its id is null: a single request's never is) that failed with `e` after it was sent. */
function batchAnswerable(call: Call, e: GatewayError): JsonRpcId[] | undefined {
  if (call.id !== null || !call.messages || !ANSWER_FAILURES.has(e.code)) return undefined;
  const ids = requestIds(call.messages);
  return ids.length > 0 ? ids : undefined;
}

function resumeStream(gw: GatewayContext, prepared: PreparedResume, res: ServerResponse, reopen: Reopen): void {
  gw.hub.resume(prepared, res, reopen);
}

function relayStream(gw: GatewayContext, opts: Parameters<StreamHub['relay']>[0]): string {
  return gw.hub.relay(opts);
}

const onPost: Step = async (gw, request, call) => {
  const upstream = serverOf(gw, request);
  const body = request.body;
  if (!body || body.length === 0) throw new GatewayError('MCPGW_ERR_PARSE', 'empty body');
  const incoming = parseBody(body);
  const messages: readonly Envelope[] = incoming.batch ? incoming.messages : [incoming.message];
  const first = messages[0]!;
  call.messages = messages;
  call.id = incoming.batch ? null : first.id;
  call.method = methodLabel(first.method);
  if (!incoming.batch && first.method === 'tools/call' && typeof first.params?.name === 'string') call.tool = first.params.name;
  checkAccept(request, 'post');
  const sid = headerValue(request.headers['mcp-session-id']);

  if (!incoming.batch && first.method === 'initialize') {
    if (first.kind !== 'request') throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'initialize must be a request with an id');
    if (sid) throw new GatewayError('MCPGW_ERR_ALREADY_INITIALIZED');
    const asked = first.params?.protocolVersion;
    const protocolVersion = typeof asked === 'string' ? asked : DEFAULT_SESSION_REVISION;
    const sessionId = SessionSealer.newId();
    call.session = sessionId;
    const piped = pipelineRequest(request, call, messages, false, protocolVersion);
    // stateless: an upstream that speaks only 2026-07-28; the gateway holds the session itself.
    if (await gw.translator.translatesSessions(request.params.server, upstream, { from: request.headers, principal: call.caller?.id ?? '' })) {
      let claims: SessionClaims | undefined;
      const res = await gw.pipeline.run(piped, {
        upstream,
        send: async (req) => {
          const translated = await initializeTranslated(gw, request.params.server, upstream, req.messages[0]!, call.caller?.id ?? '', sessionId, req.headers);
          claims = translated.claims;
          return translated.res;
        },
      });
      return { res, session: claims && gw.sealer.seal(claims) };
    }
    // A session that lives in this process only (a stdio child, a 2024-11-05 upstream connection)
    // would end with a draining replica: it is opened on another one.
    if (gw.shuttingDown && (upstream.kind === 'stdio' || upstream.kind === 'sse')) throw new GatewayError('MCPGW_ERR_SHUTTING_DOWN', 'its session would live on this replica');
    let placement: SessionPlacement | undefined;
    const response = await gw.pipeline.run(piped, {
      upstream,
      send: async (req) => {
        const opened = await upstream.initialize(req, sessionId, call.holder);
        placement = opened.placement;
        return opened.response;
      },
    });
    // Refused upstream: its answer goes back as it is, and there is no session to name.
    if (response.status >= 300 || !placement) return { res: response };
    gw.sessions.started(sessionId);
    const claims: SessionClaims = {
      id: sessionId,
      server: request.params.server,
      ...placement,
      principal: call.caller?.id ?? '',
      protocolVersion,
      issuedAt: Math.floor(Date.now() / 1000),
    };
    const session = gw.sealer.seal(claims);
    // Only an SSE answer is relayed as a stream (the SDK's JSON answer needs none of what it would hold).
    if (!relayable(response)) return { res: response, session };
    return { res: response, session, stream: postStream(gw, call, upstream, claims, request, messages, protocolVersion) };
  }
  if (messages.some((m) => m.method === 'initialize')) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'initialize must not be batched');
  // stateless: a 2026-07-28 body sent without its headers.
  if (!sid && !incoming.batch) rejectUnmarked(first);
  const claims = await openSession(gw, request, sid, call);
  const version = protocolVersionOf(request);
  // stateless: a session held here for a 2026-07-28 upstream (src/translate/to-stateless.ts).
  if (isTranslatedSession(claims)) return translatedSessionPost(gw, upstream, call, claims, request.headers, messages, incoming.batch, version);
  if (incoming.batch && !allowsBatch(version)) throw new GatewayError('MCPGW_ERR_BATCH_NOT_SUPPORTED', `protocol revision ${version}`);
  // auth: hide the tools, resources and prompts this caller may not use (src/auth/guard.ts).
  const policy = call.caller && gw.auth?.policy(request.params.server);
  const guard = policy?.filtersItems ? guardRequest(policy, call.caller!, messages) : undefined;
  if (guard) call.hidden = guard.hidden;
  // pipeline: rate limits, result cache, breaker fast-fail, time limit, retries (src/pipeline/);
  // a request with a hidden name swapped out is never answered from the cache.
  const piped = pipelineRequest(request, call, guard?.messages ?? messages, incoming.batch, version, claims, guard !== undefined && guard.masks.length > 0);
  const sent = await withSession(gw, claims, () => gw.pipeline.run(piped, sessionExchange(upstream, claims, request.headers, version)));
  // Only an SSE answer is relayed as a stream (a JSON one needs none of what it would hold).
  if (!relayable(sent)) return { res: guard ? await guardResponse(sent, guard) : sent };
  const stream = postStream(gw, call, upstream, claims, request, messages, version);
  if (!guard) return { res: sent, stream };
  return { res: await guardResponse(sent, guard), stream: { ...stream, guard: serializeGuard(guard) } };
};

function postStream(gw: GatewayContext, call: Call, upstream: Upstream, claims: SessionClaims, request: McpRequest, messages: readonly Envelope[], version: string): StreamContext {
  const ids = requestIds(messages);
  const accept = headerValue(request.headers.accept);
  const json = accept === '' || accept.includes('application/json') || accept.includes('*/*');
  return { sessionId: claims.id, kind: 'post', requests: JSON.stringify(ids), priming: primes(version), reopen: reopener(gw, call, upstream, claims, request, version), json };
}

/** An upstream answer handle() relays through the event hub: an SSE stream (status 200). */
function relayable(res: UpstreamResponse): res is UpstreamResponse & { readonly body: Readable } {
  return res.status === 200 && res.body !== null && typeof res.body !== 'string' && res.headers['content-type']?.startsWith('text/event-stream') === true;
}

/**
 * How a broken stream of this session is picked up again: the upstream's own resumption (a GET
 * with its Last-Event-ID), filtered for the caller as the stream's first part was. The gateway's
 * own request: what it resumes was admitted when it came.
 */
function reopener(gw: GatewayContext, call: Call, upstream: Upstream, claims: SessionClaims, request: McpRequest, version: string): Reopen {
  // stateless: a session held here has no upstream stream to resume.
  if (isTranslatedSession(claims)) return translatedReopen(gw, upstream, claims);
  return async (upstreamEventId, info) => {
    // A stdio child has no stream resumption; its standalone stream can only be opened anew.
    if (upstream.kind === 'stdio' && info.kind === 'post') return undefined;
    // auth: the plan of the request the stream answers, for the caller the session is bound to
    // (restored first: nothing is opened upstream if it cannot be).
    const guard = info.guard ? restoreGuard(info.guard, gw.auth?.policy(claims.server), call.caller) : undefined;
    const res = await upstream.get(claims, clientRequest(request.headers, [], false, version, GATEWAY_ORIGINATED), upstreamEventId || undefined);
    if (res.status !== 200 || res.body === null || typeof res.body === 'string') {
      if (res.body !== null && typeof res.body !== 'string') discard(res.body);
      return undefined;
    }
    return guard ? guardStream(res.body, guard) : res.body;
  };
}

const onGet: Step = async (gw, request, call) => {
  call.method = 'GET';
  const upstream = serverOf(gw, request);
  checkAccept(request, 'get');
  const claims = await openSession(gw, request, headerValue(request.headers['mcp-session-id']), call);
  const version = protocolVersionOf(request);
  const lastEventId = headerValue(request.headers['last-event-id']);
  if (lastEventId) return { resume: await gw.hub.prepareResume(claims.id, lastEventId, request.params.server), reopen: reopener(gw, call, upstream, claims, request, version) };
  const standalone = gw.hub.standaloneState(claims.id);
  if (standalone === 'busy') throw new GatewayError('MCPGW_ERR_STREAM_CONFLICT');
  if (standalone === 'detached') return { adopt: claims.id, priming: primes(version) };
  // stateless: a session held here for a 2026-07-28 upstream: its GET stream is a subscriptions/listen.
  if (isTranslatedSession(claims)) return translatedSessionGet(gw, upstream, claims, request.headers, version);
  // pipeline: the GET stream's notifications invalidate the cache (src/pipeline/cache.ts).
  const piped = pipelineRequest(request, call, [], false, version, claims);
  const res = await withSession(gw, claims, () => gw.pipeline.run(piped, { upstream, send: (req) => upstream.get(claims, req) }));
  return { res, stream: { sessionId: claims.id, kind: 'get', requests: '', priming: primes(version), reopen: reopener(gw, call, upstream, claims, request, version) } };
};

const onDelete: Step = async (gw, request, call) => {
  call.method = 'DELETE';
  const upstream = serverOf(gw, request);
  const claims = await openSession(gw, request, headerValue(request.headers['mcp-session-id']), call);
  const version = protocolVersionOf(request);
  // stateless: nothing upstream to end for a session held here.
  if (isTranslatedSession(claims)) {
    await gw.endSession(claims);
    return { res: { status: 200, headers: {}, body: null } };
  }
  const piped = pipelineRequest(request, call, [], false, version, claims);
  const res = await withSession(gw, claims, () => gw.pipeline.run(piped, { upstream, send: (req) => upstream.delete(claims, req) }));
  // 405 means the upstream keeps the session alive; anything else ends it here too.
  if (res.status !== 405) await gw.endSession(claims);
  return { res };
};

export function serverOf(gw: GatewayContext, request: McpRequest) {
  const upstream = gw.servers.get(request.params.server);
  if (!upstream) throw new GatewayError('MCPGW_ERR_UNKNOWN_SERVER', request.params.server);
  return upstream;
}

export async function openSession(gw: GatewayContext, request: McpRequest, sid: string, call: Call): Promise<SessionClaims> {
  if (!sid) throw new GatewayError('MCPGW_ERR_SESSION_REQUIRED');
  const claims = gw.sealer.open(sid);
  if (!claims || claims.server !== request.params.server) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND');
  // auth: a session belongs to the caller that created it; to anyone else it does not exist.
  if (claims.principal !== (call.caller?.id ?? '')) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND');
  call.session = claims.id;
  if ((claims.issuedAt * 1000 + gw.config.session.maxLifetimeMs) <= Date.now()) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'it expired');
  if (await gw.sessions.isEnded(claims.id)) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND');
  call.principal = claims.principal || undefined;
  return claims;
}

/** Runs an upstream step; a session the upstream no longer has is ended on every replica. */
export async function withSession(gw: GatewayContext, claims: SessionClaims, step: () => Promise<UpstreamResponse>): Promise<UpstreamResponse> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'MCPGW_ERR_SESSION_NOT_FOUND') await gw.endSession(claims);
    throw err;
  }
}

function protocolVersionOf(request: McpRequest): string {
  const header = headerValue(request.headers['mcp-protocol-version']);
  // The spec: without the header a server assumes 2025-03-26.
  if (!header) return DEFAULT_SESSION_REVISION;
  if (!isSessionRevision(header)) throw new GatewayError('MCPGW_ERR_UNSUPPORTED_PROTOCOL_VERSION', header);
  return header;
}

export function checkAccept(request: McpRequest, kind: 'post' | 'get'): void {
  const accept = headerValue(request.headers.accept);
  if (!accept || accept.includes('*/*')) return;
  const ok = kind === 'get' ? accept.includes('text/event-stream') : accept.includes('application/json') || accept.includes('text/event-stream');
  if (!ok) throw new GatewayError('MCPGW_ERR_NOT_ACCEPTABLE', `got "${accept}"`);
}

/**
 * The pipeline's view of a request on /mcp/<server> (the session-era door); `claims`, the
 * session it goes on (none for initialize), `masked` as PipelineRequest says.
 */
function pipelineRequest(request: McpRequest, call: Call, messages: readonly Envelope[], batch: boolean, protocolVersion: string, claims?: SessionClaims, masked = false): PipelineRequest {
  return { server: request.params.server, principal: call.caller?.id, holder: call.holder, messages, door: 'session', headers: request.headers, batch, protocolVersion, relayed: true, session: claims?.id, replica: claims?.upstream, masked };
}

export function sendError(reply: FastifyReply, err: GatewayError, id: JsonRpcId, headers?: Record<string, string>): void {
  if (reply.sent || reply.raw.headersSent) {
    reply.raw.destroy();
    return;
  }
  reply.code(err.status).header('content-type', 'application/json');
  // The draining replica's answer: the client retries at once, on another replica.
  if (err.code === 'MCPGW_ERR_SHUTTING_DOWN') reply.header('retry-after', '1');
  if (headers) reply.headers(headers);
  if (err.headers) reply.headers(err.headers);
  reply.send(errorBody(err, id));
}

/** compose: the caller as member calls see it, and where the names a member's policy hid are noted. */
export function stampedCaller(call: Call): StampedCaller {
  return new CallStamp(call);
}

/**
 * A class, not an object literal with a closure: V8 may decide to allocate all of a literal's
 * objects in the old generation (allocation-site pretenuring, which it never takes back), and
 * this one, made on every request, reached the request's `Call` and through it the whole
 * request. Once dead, such an old object keeps what it points to alive through scavenges until
 * a full GC: ≈ 2 KB of every relayed call was promoted for it (docs/performance.md, "Relayed SSE
 * answers: literals V8 allocates old"). Objects made by `new` are never allocated old that way.
 */
class CallStamp implements StampedCaller {
  readonly principal: Principal | undefined;
  readonly holder: string;
  readonly #call: Call;

  constructor(call: Call) {
    this.principal = call.caller;
    this.holder = call.holder;
    this.#call = call;
  }

  hid(names: readonly string[]): void {
    this.#call.hidden = [...(this.#call.hidden ?? []), ...names];
  }
}
