/**
 * The exchange of a door whose upstream holds a session (session era, 2024-11-05, a virtual
 * server's members): a POST on the session, and notifications/cancelled on it when the time
 * limit gives up on a request.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { JsonRpcId } from '../errors.ts';
import type { SessionClaims } from '../session/token.ts';
import { drain } from '../upstream/body.ts';
import { ownRequest, type Upstream } from '../upstream/types.ts';
import { GATEWAY_ORIGINATED } from './admission.ts';
import type { Exchange } from './request.ts';

export function sessionExchange(upstream: Upstream, claims: SessionClaims, headers: IncomingHttpHeaders, protocolVersion: string): Exchange {
  return {
    upstream,
    send: (req) => upstream.post(claims, req),
    cancel(id: JsonRpcId, reason: string) {
      const message = { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } };
      // The gateway's own message: the request it cancels was admitted when it came.
      upstream.post(claims, ownRequest(headers, message, protocolVersion, GATEWAY_ORIGINATED)).then(
        (res) => {
          if (res.body && typeof res.body !== 'string') drain(res.body);
        },
        () => {},
      );
    },
  };
}
