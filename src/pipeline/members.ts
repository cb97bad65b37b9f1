/**
 * compose: a virtual server's call of one of its members runs the chain again, as the member's
 * own request — charged to the member's rate limits, answered from its cache, under its time
 * limit and retries — so a caller cannot get around a member's policies through a virtual
 * server. What the virtual server writes for itself (its probe) goes as it is.
 */
import { GATEWAY_ORIGINATED } from './admission.ts';
import { sessionExchange } from './exchange.ts';
import type { Pipeline } from './pipeline.ts';
import type { MemberCall } from '../upstream/compose.ts';

export function memberCalls(pipeline: Pipeline): MemberCall {
  return (upstream, claims, req) => {
    if (req.admission === GATEWAY_ORIGINATED) return upstream.post(claims, req);
    const piped = {
      server: claims.server,
      principal: claims.principal || undefined,
      holder: claims.principal || claims.id,
      messages: req.messages,
      door: 'compose' as const,
      headers: req.headers,
      batch: false,
      protocolVersion: req.protocolVersion,
      session: claims.id,
      replica: claims.upstream,
    };
    return pipeline.run(piped, sessionExchange(upstream, claims, req.headers, req.protocolVersion));
  };
}
