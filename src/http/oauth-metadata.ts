import type { FastifyInstance, FastifyRequest } from 'fastify';
import { METADATA_PATH, metadataDocument, resourceUrls } from '../auth/resource.ts';
import { GatewayError } from '../errors.ts';
import type { GatewayContext } from './context.ts';
import { sendError } from './mcp.ts';

/**
 * RFC 9728 protected resource metadata, one document per published server, at
 * `/.well-known/oauth-protected-resource[/<prefix>]/mcp/<server>`. The prefix part is whatever the
 * proxy in front kept (configured `auth.pathPrefix`, `auth.publicUrl`'s path or
 * `X-Forwarded-Prefix`), so the route accepts any prefix and answers for the server named last.
 */
export function registerMetadataRoutes(app: FastifyInstance, gw: GatewayContext): void {
  // The mode cannot change on a reload; the rest of auth can, so it is read per request.
  if (gw.config.auth.mode !== 'jwt') return;
  app.get(`${METADATA_PATH}/*`, (request: FastifyRequest<{ Params: { '*': string } }>, reply) => {
    const auth = gw.config.auth;
    const match = /(?:^|\/)mcp\/([^/]+)$/.exec(request.params['*']);
    if (!match) return sendError(reply, new GatewayError('MCPGW_ERR_NOT_FOUND', `${METADATA_PATH}/${request.params['*']}`), null);
    // Looked up before anything is built from it, as on the /mcp/<server> routes (see app.ts).
    const server = match[1]!;
    if (!gw.servers.has(server)) return sendError(reply, new GatewayError('MCPGW_ERR_UNKNOWN_SERVER'), null);
    const { policy } = gw.config.servers[server]!;
    const doc = metadataDocument(auth, resourceUrls(auth, gw.config.listen.trustProxy !== false, request, server), policy.rule.scopes, server);
    reply.header('content-type', 'application/json').header('cache-control', 'max-age=300').send(JSON.stringify(doc));
  });
}
