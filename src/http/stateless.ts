import { randomBytes } from 'node:crypto';
import { guardRequest, guardResponse } from '../auth/guard.ts';
import { principalOf } from '../auth/principal.ts';
import { GatewayError } from '../errors.ts';
import type { Reopen } from '../events/hub.ts';
import type { IncomingHttpHeaders } from 'node:http';
import type { SessionClaims } from '../session/token.ts';
import { cancelTranslated, listenTranslated, postTranslated } from '../translate/to-stateless.ts';
import { methodLabel } from '../ops/metrics.ts';
import { parseBody, requestIds, type Envelope } from '../protocol/jsonrpc.ts';
import { checkRequest, checkVersionHeader, CORE_METHODS, nameOf } from '../protocol/stateless.ts';
import { primes, STATELESS_REVISION } from '../protocol/revisions.ts';
import { parkedSlots, statelessToSession } from '../translate/to-session.ts';
import { headerValue } from '../protocol/headers.ts';
import type { ClientRequest, Upstream, UpstreamResponse } from '../upstream/types.ts';
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
  // Closing the response before it is complete is this revision's cancellation.
  const cancel = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) cancel.abort();
  });
  const signalOf = (req: ClientRequest) => (req.expiry ? AbortSignal.any([cancel.signal, req.expiry.signal]) : cancel.signal);
  // auth: hidden names are swapped in the body; lists are filtered after the chain, so a cached
  // answer is filtered too.
  const policy = call.caller && gw.auth?.policy(request.params.server);
  const guard = message.kind === 'request' && policy?.filtersItems ? guardRequest(policy, call.caller!, [message]) : undefined;
  if (guard) call.hidden = guard.hidden;
  const piped: PipelineRequest = {
    server: request.params.server,
    principal: call.caller?.id,
    holder: call.holder,
    messages: guard?.messages ?? [message],
    door: 'stateless',
    // handle() hands an SSE answer to the event hub (src/http/mcp.ts).
    relayed: true,
    headers: request.headers,
    batch: false,
    protocolVersion: STATELESS_REVISION,
    masked: guard !== undefined && guard.masks.length > 0,
  };

  const t = gw.translator;
  let res: UpstreamResponse;
  if ((await t.era(request.params.server, upstream, { from: request.headers, principal: call.caller?.id ?? '' })) === 'stateless') {
    // pipeline: the chain (src/pipeline/); aborting the exchange cancels it upstream, and the
    // mirrored Mcp-Name follows the body (src/upstream/http.ts writes the mirrored headers from
    // the message it sends).
    res = await gw.pipeline.run(piped, { upstream, send: (req) => upstream.exchange!(req, signalOf(req)) });
  } else {
    // A session-era upstream knows none of this revision's extensions.
    if (message.kind === 'notification') return { res: { status: 202, headers: {}, body: null } };
    if (!CORE_METHODS.has(message.method!)) throw new GatewayError('MCPGW_ERR_METHOD_NOT_FOUND', `"${message.method}" is not served for a session-era upstream`);
    // pipeline: a retry going on with a call parked for input counts under that call's
    // concurrency slots (the call keeps them while parked), not slots of its own.
    const continues = parkedSlots(t, request.params.server, call.caller?.id ?? '', piped.messages[0]!);
    // pipeline: the chain; on expiry the signal aborts, which sends notifications/cancelled upstream.
    res = await gw.pipeline.run(continues ? { ...piped, continues } : piped, {
      upstream,
      send: (req, slots) => statelessToSession({ gw, server: request.params.server, upstream, caller: call.caller, checked: principalOf(request.headers), holder: call.holder, message: req.messages[0]!, meta, signal: signalOf(req), admission: req.admission, slots }).then((t) => t.res),
    });
  }
  if (guard) res = await guardResponse(res, guard);
  const streamed = res.body;
  if (streamed !== null && typeof streamed !== 'string') {
    // A stream the client left is ended here, so the event log's producer ends too: once relayed,
    // by the hub, which then accounts the request as cancelled unless its answer had passed.
    let relayed: string | undefined;
    cancel.signal.addEventListener('abort', () => (relayed === undefined ? streamed.destroy(new Error('the client closed the response')) : gw.hub.interrupt(relayed)), { once: true });
    // (the pipeline's time limit is told the key too: src/pipeline/deadline.ts)
    const timed = res.onStream;
    res = {
      ...res,
      onStream: (key) => {
        relayed = key;
        timed?.(key);
      },
    };
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
export async function translatedSessionPost(gw: GatewayContext, upstream: Upstream, call: Call, claims: SessionClaims, headers: IncomingHttpHeaders, messages: readonly Envelope[], batch: boolean, version: string): Promise<Outcome> {
  // auth: hidden names are swapped before translation, lists filtered after it.
  const policy = call.caller && gw.auth?.policy(claims.server);
  const guard = policy?.filtersItems ? guardRequest(policy, call.caller!, messages) : undefined;
  if (guard) call.hidden = guard.hidden;
  const piped: PipelineRequest = { server: claims.server, principal: call.caller?.id, holder: call.holder, messages: guard?.messages ?? messages, door: 'session', headers, batch, protocolVersion: version, session: claims.id, masked: guard !== undefined && guard.masks.length > 0, relayed: true };
  // pipeline: the chain; on the time limit's expiry the 2026-07-28 call upstream is closed (its cancellation).
  const raw = await gw.pipeline.run(piped, {
    upstream,
    send: (req) => postTranslated(gw, upstream, claims, req.messages, batch, req.admission, req.headers),
    cancel: (id) => cancelTranslated(gw, claims, id),
  });
  const res = guard ? await guardResponse(raw, guard) : raw;
  return { res, stream: { sessionId: claims.id, kind: 'post', requests: JSON.stringify(requestIds(messages)), priming: primes(version), reopen: noReopen } };
}

/** The GET stream of such a session: a subscriptions/listen upstream. */
export async function translatedSessionGet(gw: GatewayContext, upstream: Upstream, claims: SessionClaims, headers: IncomingHttpHeaders, version: string): Promise<Outcome> {
  const { res, reopen } = listenTranslated(gw, upstream, claims, headers);
  return { res: await res!, stream: { sessionId: claims.id, kind: 'get', requests: '', priming: primes(version), reopen } };
}

/** How the event log picks a broken stream of such a session up again: a new listen for GET, nothing for a POST. */
export function translatedReopen(gw: GatewayContext, upstream: Upstream, claims: SessionClaims): Reopen {
  const { reopen } = listenTranslated(gw, upstream, claims, undefined, true);
  return async (_upstreamEventId, info) => (info.kind === 'get' ? reopen() : undefined);
}
