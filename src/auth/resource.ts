import type { FastifyRequest } from 'fastify';
import type { AuthConfig } from '../config/types.ts';
import { headerValue } from '../protocol/headers.ts';
import { quotedString } from '../protocol/header-fields.ts';

/**
 * Where a published server lives as the client sees it, and where its RFC 9728 metadata is.
 * `auth.publicUrl` wins; otherwise the request's scheme and host (from `X-Forwarded-Proto`/`-Host`
 * when `listen.trustProxy` is on, as Fastify reads them) and a path prefix (`auth.pathPrefix`, or
 * `X-Forwarded-Prefix` behind a trusted proxy). The metadata path inserts the well-known segment
 * before the resource's path (RFC 9728 §3.1): `/.well-known/oauth-protected-resource/<prefix>/mcp/<server>`.
 */
export interface ResourceUrls {
  readonly resource: string;
  readonly metadata: string;
}

export const METADATA_PATH = '/.well-known/oauth-protected-resource';

// A DNS name is at most 253 characters; a port adds 6. Longer is not a host, whatever it holds.
const SAFE_HOST = /^(?=.{1,259}$)(?:[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?)$/;
const SAFE_PREFIX = /^(?=.{0,256}$)(\/[A-Za-z0-9._~-]+)*$/;

export function resourceUrls(auth: AuthConfig, trustProxy: boolean, request: FastifyRequest, server: string): ResourceUrls {
  let origin: string;
  let prefix: string;
  if (auth.publicUrl) {
    const u = new URL(auth.publicUrl);
    origin = u.origin;
    prefix = u.pathname === '/' ? '' : u.pathname.replace(/\/+$/, '');
  } else {
    const host = SAFE_HOST.test(request.host) ? request.host : 'localhost';
    origin = `${request.protocol === 'https' ? 'https' : 'http'}://${host}`;
    prefix = auth.pathPrefix;
    const forwarded = trustProxy ? headerValue(request.headers['x-forwarded-prefix']).replace(/\/+$/, '') : '';
    if (forwarded && SAFE_PREFIX.test(forwarded)) prefix = forwarded;
  }
  const path = `${prefix}/mcp/${server}`;
  return { resource: origin + path, metadata: `${origin}${METADATA_PATH}${path}` };
}

/**
 * RFC 6750 §3 challenge. Every value is quoted as RFC 9110 has it, whatever built it: the
 * metadata URL holds a host and a path prefix that may come from the request.
 */
export function bearerChallenge(metadataUrl: string, error?: 'invalid_token' | 'insufficient_scope', scopes?: readonly string[]): string {
  let out = `Bearer resource_metadata=${quotedString(metadataUrl)}`;
  if (error) out += `, error=${quotedString(error)}`;
  if (scopes && scopes.length > 0) out += `, scope=${quotedString(scopes.join(' '))}`;
  return out;
}

/** The RFC 9728 protected resource metadata document of one server. */
export function metadataDocument(auth: AuthConfig, urls: ResourceUrls, scopes: readonly string[], server: string): Record<string, unknown> {
  return {
    resource: urls.resource,
    authorization_servers: auth.authorizationServers,
    ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
    bearer_methods_supported: ['header'],
    resource_name: `MCP server "${server}"`,
  };
}
