/**
 * The breaker stage: when the circuit breaker of every replica of an HTTP pool is open
 * (src/upstream/replica.ts), a request fails at once with MCPGW_ERR_NO_HEALTHY_UPSTREAM, naming
 * the server, instead of queueing for a replica. A stdio server's children are per session and
 * need no spare replica; a virtual server's members run this stage for their own calls.
 */
import { GatewayError } from '../errors.ts';
import type { Upstream } from '../upstream/types.ts';

export function failFast(server: string, upstream: Upstream): void {
  if (upstream.kind === 'http' && upstream.health() !== 'up') {
    throw new GatewayError('MCPGW_ERR_NO_HEALTHY_UPSTREAM', `server "${server}": the circuit breaker of every replica is open`);
  }
}
