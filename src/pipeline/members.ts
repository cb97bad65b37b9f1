/**
 * compose: a virtual server's call of one of its members runs the chain again, as the member's
 * own request — charged to the member's rate limits, answered from its cache, under its time
 * limit and retries — so a caller cannot get around a member's policies through a virtual
 * server. The member's auth policy applies too: its hidden tools, resources and prompts are
 * unknown to the caller through the virtual server as they are on the member's own door, and a
 * member whose server-level rule turns the caller away shows it nothing. What the
 * virtual server writes for itself (its probe) goes as it is.
 */
import { guardRequest, guardResponse } from '../auth/guard.ts';
import { permits } from '../auth/policy.ts';
import { principalOf, type Principal } from '../auth/principal.ts';
import type { ServerPolicy } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import { GATEWAY_ORIGINATED } from './admission.ts';
import { sessionExchange } from './exchange.ts';
import type { Pipeline } from './pipeline.ts';
import type { MemberCall } from '../upstream/compose.ts';

export function memberCalls(pipeline: Pipeline, policyOf: (server: string) => ServerPolicy | undefined): MemberCall {
  return async (upstream, claims, req) => {
    if (req.admission === GATEWAY_ORIGINATED) return upstream.post(claims, req);
    const caller = principalOf(req.headers);
    const principal = caller?.principal;
    const policy = usable(policyOf(claims.server), principal);
    // Fail closed: a member whose policy filters cannot be reached for a caller it cannot check.
    if (policy?.filtersItems && !principal) throw new GatewayError('MCPGW_ERR_FORBIDDEN', `member "${claims.server}": the caller could not be checked against its policy`);
    const guard = policy?.filtersItems && principal ? guardRequest(policy, principal, req.messages) : undefined;
    if (guard && guard.hidden.length > 0) caller!.hid(guard.hidden);
    const piped = {
      server: claims.server,
      principal: claims.principal || undefined,
      // The caller the front door counts, not the virtual session: a caller's sessions are one caller.
      holder: caller?.holder ?? (claims.principal || claims.id),
      messages: guard?.messages ?? req.messages,
      door: 'compose' as const,
      headers: req.headers,
      batch: false,
      protocolVersion: req.protocolVersion,
      session: claims.id,
      replica: claims.upstream,
      masked: guard !== undefined && guard.masks.length > 0,
    };
    const res = await pipeline.run(piped, sessionExchange(upstream, claims, req.headers, req.protocolVersion));
    return guard ? guardResponse(res, guard) : res;
  };
}

/**
 * The member's policy for this caller. One whose server-level rule (`auth.scopes`, `auth.claims`)
 * turns the caller away hides everything of the member: its own endpoint answers such a caller
 * 403, and through a virtual server it must not get more (a list without the member's items,
 * "unknown" for a call).
 */
function usable(policy: ServerPolicy | undefined, principal: Principal | undefined): ServerPolicy | undefined {
  if (!policy || !principal || permits(policy.rule, principal)) return policy;
  const none = () => ({ exact: new Map(), patterns: [] });
  return { ...policy, tools: none(), resources: none(), prompts: none(), unlisted: 'deny', filtersItems: true };
}
