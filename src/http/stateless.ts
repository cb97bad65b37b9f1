import { randomBytes } from 'node:crypto';
import { guardRequest, guardResponse } from '../auth/guard.ts';
import { GatewayError } from '../errors.ts';
import type { Reopen } from '../events/hub.ts';
import type { Admitted } from '../pipeline/admission.ts';
import type { SessionClaims } from '../session/token.ts';
import { cancelTranslated, listenTranslated, postTranslated } from '../translate/to-stateless.ts';
import { methodLabel } from '../ops/metrics.ts';
import { parseBody } from '../protocol/jsonrpc.ts';
import { checkRequest, checkVersionHeader, CORE_METHODS, nameOf } from '../protocol/stateless.ts';
import { STATELESS_REVISION } from '../protocol/revisions.ts';
import { statelessToSession } from '../translate/to-session.ts';
import { headerValue } from '../protocol/headers.ts';
import { clientRequest, type Upstream, type UpstreamResponse } from '../upstream/types.ts';
import type { PipelineRequest } from '../pipeline/request.ts';
import type { GatewayContext } from './context.ts';
import type { Call } from './accounting.ts';
import type { Outcome, Step } from './step.ts';

/**
 * Revision 2026-07-28 at /mcp/<server>: no session, no GET stream; each POST carries one request
 * whose `_meta` says who asks and with what capabilities. The gateway checks the mirrored headers
 * against the body, then either forwards the bytes to a 2026-07-28 upstream (a replica picked for
 * this request alone) or translates for a session-era upstream (src/translate/to-session.ts).
 * Closing the response early cancels the request upstream. SSE answers still go through the
 * event log (a stream key of their own, no session); nothing offers to resume them.
 */
export const onStatelessPost: Step = async (gw, request, call, reply) => {
  const upstream = gw.servers.get(request.params.server);
  if (!upstream) throw new GatewayError('MCPGW_ERR_UNKNOWN_SERVER', request.params.server);
  // Route and count on the headers: the body is checked against them below.
  call.method = methodLabel(headerValue(request.headers['mcp-method']) || undefined);
  const body = request.body;
  if (!body || body.length === 0) throw new GatewayError('MCPGW_ERR_PARSE', 'empty body');
  const incoming = parseBody(body);
  if (incoming.batch) throw new GatewayError('MCPGW_ERR_BATCH_NOT_SUPPORTED', `protocol revision ${STATELESS_REVISION}`);
  const message = incoming.message;
  call.messages = [message];
  call.id = message.id;
  // Checked once the id is known: every error of this revision carries the request's id.
  checkAccept(headerValue(request.headers.accept));
  checkVersionHeader(request.headers);
  if (message.kind === 'response') throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', `a ${STATELESS_REVISION} client sends no responses`);
  call.method = methodLabel(message.method);
  const meta = checkRequest(request.headers, message);
  if (message.method === 'tools/call') call.tool = nameOf('tools/call', message.params);
  const piped: PipelineRequest = { server: request.params.server, principal: call.caller?.id, holder: call.holder, messages: [message], door: 'stateless' };
  // pipeline: rate limits per principal, server and tool, before anything reaches an upstream.
  const admitted = await gw.limit.admit(piped);

  // Closing the response before it is complete is this revision's cancellation.
  const cancel = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) cancel.abort();
  });

  const t = gw.translator;
  let res: UpstreamResponse;
  if ((await t.era(request.params.server, upstream)) === 'stateless') {
    // auth: hidden names are swapped in the body; the mirrored Mcp-Name follows the body
    // (src/upstream/http.ts writes the mirrored headers from the message it sends).
    const policy = call.caller && gw.auth?.policy(request.params.server);
    const guard = message.kind === 'request' && policy?.filtersItems ? guardRequest(policy, call.caller!, [message]) : undefined;
    if (guard) call.hidden = guard.hidden;
    const req = clientRequest(request.headers, guard?.messages ?? [message], false, STATELESS_REVISION, admitted);
    // pipeline: the time limit; on expiry the exchange is aborted, which cancels it upstream.
    const timed = gw.deadlines.start(piped);
    res = timed ? await timed.response(upstream.exchange!(req, AbortSignal.any([cancel.signal, timed.signal]))) : await upstream.exchange!(req, cancel.signal);
    if (guard) res = await guardResponse(res, guard);
  } else {
    // A session-era upstream knows none of this revision's extensions.
    if (message.kind === 'notification') return { res: { status: 202, headers: {}, body: null } };
    if (!CORE_METHODS.has(message.method!)) throw new GatewayError('MCPGW_ERR_METHOD_NOT_FOUND', `"${message.method}" is not served for a session-era upstream`);
    // pipeline: the time limit; on expiry the signal aborts, which sends notifications/cancelled upstream.
    const timed = gw.deadlines.start(piped);
    const signal = timed ? AbortSignal.any([cancel.signal, timed.signal]) : cancel.signal;
    const translated = statelessToSession({ gw, server: request.params.server, upstream, caller: call.caller, holder: call.holder, message, meta, signal, admitted }).then((t) => {
      if (t.hidden) call.hidden = t.hidden;
      return t.res;
    });
    res = timed ? await timed.response(translated) : await translated;
  }
  const streamed = res.body;
  if (streamed !== null && typeof streamed !== 'string') {
    // A stream the client left is ended here, so the event log's producer ends too: once relayed,
    // by the hub, which then accounts the request as cancelled unless its answer had passed.
    let relayed: string | undefined;
    cancel.signal.addEventListener('abort', () => (relayed === undefined ? streamed.destroy(new Error('the client closed the response')) : gw.hub.interrupt(relayed)), { once: true });
    res = { ...res, onStream: (key) => void (relayed = key) };
  }
  return { res, stream: { sessionId: `stateless.${randomBytes(9).toString('base64url')}`, kind: 'post', requests: '', priming: false, reopen: noReopen } };
};

/** GET (the standalone stream) and DELETE (end of session) do not exist in 2026-07-28. */
export const statelessNotAllowed: Step = async () => {
  const err = new GatewayError('MCPGW_ERR_METHOD_NOT_ALLOWED', `revision ${STATELESS_REVISION} has no GET stream and no sessions`);
  err.headers = { allow: 'POST' };
  throw err;
};

const noReopen = async () => undefined;

function checkAccept(accept: string): void {
  if (!accept || accept.includes('*/*') || accept.includes('application/json') || accept.includes('text/event-stream')) return;
  throw new GatewayError('MCPGW_ERR_NOT_ACCEPTABLE', `got "${accept}"`);
}

// ---------------------------------------------------------------------------------------------
// Session-era clients of a 2026-07-28 upstream: the gateway holds their sessions itself.

/** A POST on a session the gateway holds for a 2026-07-28 upstream. */
export async function translatedSessionPost(gw: GatewayContext, upstream: Upstream, call: Call, claims: SessionClaims, piped: PipelineRequest, batch: boolean, version: string, admitted: Admitted): Promise<Outcome> {
  const messages = piped.messages;
  // auth: hidden names are swapped before translation, lists filtered after it.
  const policy = call.caller && gw.auth?.policy(claims.server);
  const guard = policy?.filtersItems ? guardRequest(policy, call.caller!, messages) : undefined;
  if (guard) call.hidden = guard.hidden;
  // pipeline: the request's time limit; on expiry the 2026-07-28 call upstream is closed (its cancellation).
  const first = messages[0];
  const timed = gw.deadlines.start(piped, () => first && cancelTranslated(gw, claims, first.id));
  const sent = postTranslated(gw, upstream, claims, guard?.messages ?? messages, batch, admitted);
  const raw = timed ? await timed.response(sent) : await sent;
  const res = guard ? await guardResponse(raw, guard) : raw;
  const ids = messages.filter((m) => m.kind === 'request').map((m) => m.id);
  return { res, stream: { sessionId: claims.id, kind: 'post', requests: JSON.stringify(ids), priming: version >= '2025-11-25', reopen: noReopen } };
}

/** The GET stream of such a session: a subscriptions/listen upstream. */
export async function translatedSessionGet(gw: GatewayContext, upstream: Upstream, claims: SessionClaims, version: string): Promise<Outcome> {
  const { res, reopen } = listenTranslated(gw, upstream, claims);
  return { res: await res!, stream: { sessionId: claims.id, kind: 'get', requests: '', priming: version >= '2025-11-25', reopen } };
}

/** How the event log picks a broken stream of such a session up again: a new listen for GET, nothing for a POST. */
export function translatedReopen(gw: GatewayContext, upstream: Upstream, claims: SessionClaims): Reopen {
  const { reopen } = listenTranslated(gw, upstream, claims, true);
  return async (_upstreamEventId, info) => (info.kind === 'get' ? reopen() : undefined);
}
