/**
 * compose: a virtual server's call of one of its members runs the chain again, as the member's
 * own request — charged to the member's rate limits, answered from its cache, under its time
 * limit and retries — so a caller cannot get around a member's policies through a virtual
 * server. The member's auth policy applies too: its rule for the server as a whole (scopes,
 * claims) is checked as its own door checks it — a caller it refuses reaches none of the member
 * (its lists count as empty, a call naming it is refused), and a caller that cannot be checked
 * reaches none of a member with a rule —, and its hidden tools, resources and prompts are
 * unknown to the caller through the virtual server as they are on the member's own door. A
 * member that refuses the caller is left out of its virtual session (`admits`: no initialize,
 * no standalone stream, src/upstream/compose.ts). What the virtual server writes for itself (its
 * probe) goes as it is.
 */
import { guardRequest, guardResponse } from '../auth/guard.ts';
import { permits } from '../auth/policy.ts';
import { principalOf, type StampedCaller } from '../auth/principal.ts';
import type { AccessRule, ServerPolicy } from '../config/types.ts';
import { errorBody, GatewayError } from '../errors.ts';
import { GATEWAY_ORIGINATED } from './admission.ts';
import { sessionExchange } from './exchange.ts';
import type { Pipeline } from './pipeline.ts';
import type { MemberCalls } from '../upstream/compose.ts';

export function memberCalls(pipeline: Pipeline, policyOf: (server: string) => ServerPolicy | undefined): MemberCalls {
  return {
    admits: (member, req) => {
      const policy = policyOf(member);
      return !policy || admits(policy.rule, principalOf(req.headers));
    },
    send: async (upstream, claims, req) => {
      if (req.admission === GATEWAY_ORIGINATED) return upstream.post(claims, req);
      const policy = policyOf(claims.server);
      const caller = principalOf(req.headers);
      if (policy && !admits(policy.rule, caller)) {
        // Nothing reaches the member. What the virtual session tells every member (initialized,
        // cancelled…) this one is not told; a request is answered with the refusal (a list then
        // counts as empty, a fan-out such as logging/setLevel goes on with the other members).
        const refused = new GatewayError('MCPGW_ERR_FORBIDDEN', `member "${claims.server}": its auth rule refuses this caller`);
        const m = req.messages[0];
        if (req.messages.length !== 1 || m!.kind === 'response') throw refused;
        if (m!.kind === 'notification') return { status: 202, headers: {}, body: null };
        return { status: 200, headers: { 'content-type': 'application/json' }, body: errorBody(refused, m!.id) };
      }
      // Fail closed: a member whose policy filters cannot be reached for a caller it cannot check.
      if (policy?.filtersItems && !caller?.principal) throw new GatewayError('MCPGW_ERR_FORBIDDEN', `member "${claims.server}": the caller could not be checked against its policy`);
      const guard = policy?.filtersItems && caller?.principal ? guardRequest(policy, caller.principal, req.messages) : undefined;
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
    },
  };
}

/** Whether a member's rule for the server as a whole lets the caller in; fail closed: one that cannot be checked passes only a rule that asks nothing. */
function admits(rule: AccessRule, caller: StampedCaller | undefined): boolean {
  if (caller?.principal) return permits(rule, caller.principal);
  return rule.scopes.length === 0 && Object.keys(rule.claims).length === 0;
}
