import { GATEWAY_ORIGINATED, type Admission } from '../pipeline/admission.ts';
import { RETRY_STATUSES } from '../resilience/retry.ts';
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import { errorResponse, GatewayError, type JsonRpcId } from '../errors.ts';
import type { GatewayContext } from '../http/context.ts';
import { idKey, type Envelope } from '../protocol/jsonrpc.ts';
import { isSessionRevision, SESSION_REVISIONS, STATELESS_REVISION } from '../protocol/revisions.ts';
import { META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_PROTOCOL_VERSION, META_SERVER_INFO, META_SUBSCRIPTION_ID, standardHeaders } from '../protocol/stateless.ts';
import type { SessionClaims } from '../session/token.ts';
import { forCaller, ownRequest, SSE_HEADERS, type ClientRequest, type Upstream, type UpstreamResponse } from '../upstream/types.ts';
import { emit, isNotification, isResponse, MessageReader, type Message } from './messages.ts';
import { firstResponse, GATEWAY_INFO } from './session-pool.ts';
import { discoverRequest, MAX_RESOURCE_SUBSCRIPTIONS, type LocalSession, type Translator } from './translator.ts';

/**
 * A session-era client reaching a 2026-07-28 upstream. The gateway is the session-era server:
 * it answers `initialize` from the upstream's server/discover and mints the session itself (the
 * client's capabilities and identity sealed into the session id, so any replica can serve it),
 * then sends every request as a stateless one — `_meta` envelope and headers added, balanced
 * over the replicas on its own. An `input_required` result becomes server→client requests on the
 * request's SSE stream; the call is retried upstream once the client has answered them. The GET
 * stream is a `subscriptions/listen` upstream; ping, logging/setLevel and resources/subscribe are
 * answered here.
 */

/** `upstream` of a session the gateway holds itself (there is no upstream session to pin). */
export const TRANSLATED = 'mcpgw:2026-07-28';

export function isTranslatedSession(claims: SessionClaims): boolean {
  return claims.upstream === TRANSLATED;
}

interface Declared {
  readonly capabilities: Record<string, unknown>;
  readonly clientInfo: Record<string, unknown>;
}

function declaredOf(claims: SessionClaims): Declared {
  try {
    const [capabilities, clientInfo] = JSON.parse(Buffer.from(claims.upstreamSession, 'base64url').toString('utf8')) as [Record<string, unknown>, Record<string, unknown>];
    return { capabilities: capabilities ?? {}, clientInfo: clientInfo ?? GATEWAY_INFO };
  } catch {
    return { capabilities: {}, clientInfo: GATEWAY_INFO };
  }
}

const LOCAL_MAX = 10_000;

function local(t: Translator, id: string): LocalSession {
  const map = t.locals;
  let s = map.get(id);
  if (s) {
    map.delete(id);
  } else {
    s = { logLevel: undefined, subscriptions: new Set(), inflight: new Map(), relisten: undefined, lastUsed: 0 };
    if (map.size >= LOCAL_MAX) map.delete(map.keys().next().value!);
  }
  s.lastUsed = Date.now();
  map.set(id, s);
  return s;
}

function waiters(t: Translator): Map<string, (m: Message) => void> {
  return t.waiting;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

/**
 * `initialize` for a 2026-07-28 upstream: its server/discover answer, as an InitializeResult.
 * Returns the answer and the claims of the new gateway-held session. `from`: the headers of the
 * client's initialize, whose validated token (if any) the server/discover goes out for.
 */
export async function initializeTranslated(gw: GatewayContext, server: string, upstream: Upstream, first: Envelope, principal: string, sessionId: string, from: IncomingHttpHeaders): Promise<{ res: UpstreamResponse; claims: SessionClaims }> {
  const params = first.params ?? {};
  // The client's revision when it is one of the session era, else the latest of them.
  const asked = typeof params.protocolVersion === 'string' && isSessionRevision(params.protocolVersion) ? params.protocolVersion : SESSION_REVISIONS.at(-1)!;
  const capabilities = (params.capabilities as Record<string, unknown> | undefined) ?? {};
  const clientInfo = (params.clientInfo as Record<string, unknown> | undefined) ?? GATEWAY_INFO;
  const answer = await firstResponse(await upstream.exchange!(forCaller(discoverRequest(capabilities, clientInfo, gw.translator.nextId()), from, principal)));
  const d = answer?.result;
  if (!d) throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `server/discover failed: ${answer?.error?.message ?? 'no answer'}`);
  const meta = (d._meta as Record<string, unknown> | undefined) ?? {};
  const result: Record<string, unknown> = {
    protocolVersion: asked,
    capabilities: d.capabilities ?? {},
    serverInfo: meta[META_SERVER_INFO] ?? { name: server, version: '0' },
  };
  if (typeof d.instructions === 'string') result.instructions = d.instructions;
  const claims: SessionClaims = {
    id: sessionId,
    server,
    upstream: TRANSLATED,
    upstreamSession: Buffer.from(JSON.stringify([capabilities, clientInfo])).toString('base64url'),
    node: '',
    principal,
    protocolVersion: asked,
    issuedAt: Math.floor(Date.now() / 1000),
  };
  return { res: { status: 200, headers: JSON_HEADERS, body: JSON.stringify({ jsonrpc: '2.0', id: first.id, result }) }, claims };
}

/** Closes a translated session's call upstream (2026-07-28's cancellation), as `notifications/cancelled` from its client would. */
export function cancelTranslated(gw: GatewayContext, claims: SessionClaims, id: JsonRpcId): void {
  local(gw.translator, claims.id).inflight.get(idKey(id))?.abort();
}

/**
 * A POST on a translated session. `from`: the headers of the client's request, whose validated
 * token (if any) every request sent upstream for it goes out for.
 */
export async function postTranslated(gw: GatewayContext, upstream: Upstream, claims: SessionClaims, messages: readonly Envelope[], batch: boolean, admitted: Admission, from: IncomingHttpHeaders): Promise<UpstreamResponse> {
  if (messages.length !== 1 || batch) throw new GatewayError('MCPGW_ERR_NOT_TRANSLATABLE', `a JSON-RPC batch cannot be sent to a ${STATELESS_REVISION} upstream`);
  const t = gw.translator;
  const m = messages[0]!;
  const mine = local(t, claims.id);
  if (m.kind === 'response') {
    // The client answering a request the gateway pushed for an input_required result (on this replica).
    waiters(t).get(idKey(m.id))?.(m.message as Message);
    return accepted();
  }
  if (m.kind === 'notification') {
    if (m.method === 'notifications/cancelled') {
      const id = (m.params as { requestId?: unknown } | undefined)?.requestId;
      mine.inflight.get(idKey(id))?.abort();
    }
    return accepted();
  }
  switch (m.method) {
    case 'ping':
      return result(m.id, {});
    case 'logging/setLevel':
      mine.logLevel = typeof m.params?.level === 'string' ? m.params.level : undefined;
      return result(m.id, {});
    case 'resources/subscribe':
    case 'resources/unsubscribe': {
      const uri = m.params?.uri;
      if (typeof uri === 'string') {
        if (m.method === 'resources/subscribe' && !mine.subscriptions.has(uri) && mine.subscriptions.size >= MAX_RESOURCE_SUBSCRIPTIONS) {
          throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', `a session here may subscribe to at most ${MAX_RESOURCE_SUBSCRIPTIONS} resources; unsubscribe from one first`);
        }
        if (m.method === 'resources/subscribe') mine.subscriptions.add(uri);
        else mine.subscriptions.delete(uri);
        mine.relisten?.();
      }
      return result(m.id, {});
    }
  }
  return call(t, upstream, claims, mine, m, admitted, from);
}

function accepted(): UpstreamResponse {
  return { status: 202, headers: {}, body: null };
}

function result(id: JsonRpcId, r: Record<string, unknown>): UpstreamResponse {
  return { status: 200, headers: JSON_HEADERS, body: JSON.stringify({ jsonrpc: '2.0', id, result: r }) };
}

/** Who a translated session's requests upstream are for: the headers of the client's request that caused them (if any), the session's principal. */
interface Behalf {
  readonly from: IncomingHttpHeaders | undefined;
  readonly principal: string;
}

/** A 2026-07-28 request for this method and params, carrying the session's envelope, sent on the session's caller's behalf. */
function statelessRequest(t: Translator, declared: Declared, mine: LocalSession, admission: Admission, behalf: Behalf, method: string, params: Record<string, unknown> | undefined, extra?: Record<string, unknown>): { id: string; req: ClientRequest } {
  const id = t.nextId();
  const meta: Record<string, unknown> = {
    ...(params?._meta as Record<string, unknown> | undefined),
    [META_PROTOCOL_VERSION]: STATELESS_REVISION,
    [META_CLIENT_CAPABILITIES]: declared.capabilities,
    [META_CLIENT_INFO]: declared.clientInfo,
  };
  if (mine.logLevel) meta[META_LOG_LEVEL] = mine.logLevel;
  const p = { ...params, ...extra, _meta: meta };
  const message: Message = { jsonrpc: '2.0', id, method, params: p };
  const req = ownRequest({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...standardHeaders(method, p) }, message, STATELESS_REVISION, admission);
  // The client spoke no Mcp-Param-* header: a call's are written from its arguments (src/upstream/param-marks.ts).
  return { id, req: forCaller(method === 'tools/call' ? { ...req, argumentsWritten: true } : req, behalf.from, behalf.principal) };
}

async function call(t: Translator, upstream: Upstream, claims: SessionClaims, mine: LocalSession, m: Envelope, admitted: Admission, from: IncomingHttpHeaders): Promise<UpstreamResponse> {
  const declared = declaredOf(claims);
  const behalf: Behalf = { from, principal: claims.principal };
  const abort = new AbortController();
  const key = idKey(m.id);
  mine.inflight.set(key, abort);
  const done = () => mine.inflight.get(key) === abort && mine.inflight.delete(key);
  try {
    const first = statelessRequest(t, declared, mine, admitted, behalf, m.method!, m.params);
    const res = await upstream.exchange!(first.req, abort.signal);
    // Failed without an answer (a proxy's 502…): that HTTP error is the answer, and the
    // pipeline's retry stage may send a safe call again (src/pipeline/retry.ts).
    if (RETRY_STATUSES.has(res.status)) {
      done();
      return res;
    }
    const reader = new MessageReader(res);
    const head = await reader.next();
    if (head === undefined || head === MessageReader.TIMEOUT) throw reader.failure ?? new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', 'the answer carried no JSON-RPC response');
    if (isResponse(head) && head.id === first.id && head.result?.resultType !== 'input_required') {
      reader.close();
      done();
      return { status: 200, headers: JSON_HEADERS, body: JSON.stringify(toSessionAnswer(m.id, head)) };
    }
    reader.unshift(head);
    const out = new PassThrough();
    void drive(t, upstream, declared, mine, admitted, behalf, m, first.id, reader, out, abort.signal).finally(done);
    return { status: 200, headers: { ...SSE_HEADERS }, body: out };
  } catch (err) {
    done();
    throw err;
  }
}

/** The upstream's answer under the client's id; `resultType: complete` is not a session-era field. */
function toSessionAnswer(id: JsonRpcId, m: Message): Message {
  if (m.error) return { jsonrpc: '2.0', id, error: m.error };
  const { resultType, ...rest } = m.result ?? {};
  return { jsonrpc: '2.0', id, result: resultType === 'complete' || resultType === undefined ? rest : { resultType, ...rest } };
}

/** Streams one call to the client, turning each input_required round into pushed requests and a retry. */
async function drive(t: Translator, upstream: Upstream, declared: Declared, mine: LocalSession, admitted: Admission, behalf: Behalf, m: Envelope, upstreamId: string, reader: MessageReader, out: PassThrough, signal: AbortSignal): Promise<void> {
  let current = reader;
  let currentId = upstreamId;
  try {
    for (;;) {
      const msg = await current.next();
      if (signal.aborted) return;
      if (msg === undefined || msg === MessageReader.TIMEOUT) {
        emit(out, errorResponse(current.failure ?? new GatewayError('MCPGW_ERR_STREAM_LOST'), m.id));
        return;
      }
      if (isNotification(msg)) {
        if (msg.method === 'notifications/progress' || msg.method === 'notifications/message') emit(out, msg);
        continue;
      }
      if (!isResponse(msg) || msg.id !== currentId) continue;
      const r = msg.result;
      if (r?.resultType !== 'input_required') {
        emit(out, toSessionAnswer(m.id, msg));
        return;
      }
      current.close();
      const responses = await ask(t, (r.inputRequests ?? {}) as Record<string, { method: string; params?: unknown }>, out, signal);
      if (signal.aborted) return;
      const extra: Record<string, unknown> = { inputResponses: responses };
      if (typeof r.requestState === 'string') extra.requestState = r.requestState;
      const next = statelessRequest(t, declared, mine, admitted, behalf, m.method!, m.params, extra);
      currentId = next.id;
      current = new MessageReader(await upstream.exchange!(next.req, signal));
    }
  } catch (err) {
    if (!signal.aborted) emit(out, errorResponse(err instanceof GatewayError ? err : new GatewayError('MCPGW_ERR_INTERNAL', (err as Error).message, { cause: err }), m.id));
  } finally {
    current.close();
    out.end();
  }
}

/** Pushes each input request to the client as a request of its own; resolves with the answers by key. */
async function ask(t: Translator, requests: Record<string, { method: string; params?: unknown }>, out: PassThrough, signal: AbortSignal): Promise<Record<string, unknown>> {
  const w = waiters(t);
  const answers: Record<string, unknown> = {};
  const ids: string[] = [];
  try {
    await Promise.all(
      Object.entries(requests).map(([key, r]) => {
        const id = `mcpgw-${randomBytes(9).toString('base64url')}`;
        ids.push(idKey(id));
        return new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `the client did not answer ${r.method} in time`)), t.inputTimeoutMs);
          timer.unref();
          signal.addEventListener('abort', () => resolve(), { once: true });
          w.set(idKey(id), (reply) => {
            clearTimeout(timer);
            // A declined or failed request still answers the round; the upstream decides what it means.
            answers[key] = reply.result ?? { action: 'cancel' };
            resolve();
          });
          emit(out, { jsonrpc: '2.0', id, method: r.method, params: (r.params ?? {}) as Record<string, unknown> });
        });
      }),
    );
  } finally {
    for (const id of ids) w.delete(id);
  }
  return answers;
}

/**
 * The GET stream: a `subscriptions/listen` upstream for every change notification the session
 * may want (list changes, and updates of the resources it subscribed to here). Reopened when the
 * subscriptions change; `reopen` gives the event log a way to pick a broken stream up again.
 * `from`: the headers of the client's GET, whose validated token (if any) the listen goes out
 * for; reopened later, for the session principal's latest.
 */
export function listenTranslated(gw: GatewayContext, upstream: Upstream, claims: SessionClaims, from: IncomingHttpHeaders | undefined, lazy = false): { res: Promise<UpstreamResponse> | undefined; reopen: () => Promise<Readable | undefined> } {
  const t = gw.translator;
  const open = async (): Promise<Readable> => {
    const out = new PassThrough();
    const mine = local(t, claims.id);
    const declared = declaredOf(claims);
    let reader: MessageReader | undefined;
    const connect = async () => {
      reader?.close();
      const { req } = statelessRequest(t, declared, mine, GATEWAY_ORIGINATED, { from, principal: claims.principal }, 'subscriptions/listen', {}, {
        notifications: { toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true, resourceSubscriptions: [...mine.subscriptions] },
      });
      const r = new MessageReader(await upstream.exchange!(req));
      reader = r;
      void pump(r, out, () => reader === r);
    };
    mine.relisten = () => void connect().catch(() => out.end());
    out.once('close', () => {
      reader?.close();
      if (mine.relisten) mine.relisten = undefined;
    });
    await connect();
    return out;
  };
  return {
    res: lazy ? undefined : open().then((body) => ({ status: 200, headers: { ...SSE_HEADERS }, body })),
    reopen: () => open().catch(() => undefined),
  };
}

/** Copies an upstream listen stream's notifications to the session's GET stream, without the subscription tags. */
async function pump(reader: MessageReader, out: PassThrough, current: () => boolean): Promise<void> {
  for (;;) {
    const m = await reader.next();
    if (m === undefined || m === MessageReader.TIMEOUT) break;
    if (!isNotification(m) || m.method === 'notifications/subscriptions/acknowledged') continue;
    const meta = { ...(m.params?._meta as Record<string, unknown> | undefined) };
    delete meta[META_SUBSCRIPTION_ID];
    const params = { ...m.params };
    if (Object.keys(meta).length > 0) params._meta = meta;
    else delete params._meta;
    emit(out, { jsonrpc: '2.0', method: m.method, params });
  }
  // A listen stream that ended by itself (not replaced) ends the GET stream: the client opens another.
  if (current()) out.end();
}
