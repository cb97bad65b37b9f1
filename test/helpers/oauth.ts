import { createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, jwtVerify, type JWK, type JWTPayload } from 'jose';
import Provider from 'oidc-provider';

/**
 * Two token issuers for tests. `startOidcProvider` runs a real OAuth 2.1 / OIDC authorization
 * server (npm oidc-provider) with the client_credentials grant, resource indicators (RFC 8707)
 * and a token-exchange grant (RFC 8693, registered with `registerGrantType`), issuing RS256 JWT
 * access tokens. `startTestIssuer` is an issuer whose signing key the
 * test holds, publishing a JWKS it can rotate, so tests can forge every kind of bad token.
 */

export interface OidcProvider {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly tokenUrl: string;
  /** An access token for `client` with `scope`, for the resource `resource`. */
  token(client: string, scope: string, resource: string): Promise<string>;
  /** The token-exchange grant: what it was asked, and how it answers next. */
  readonly exchange: TokenExchangeGrant;
  close(): Promise<void>;
}

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

export interface TokenExchangeGrant {
  /** Every exchange asked for, in order (the authenticated client and the form's parameters). */
  readonly requests: { client: string; params: Record<string, string | undefined> }[];
  /** Lifetime of the tokens it issues, in seconds. */
  ttl: number;
  /** Set → it answers 400 with this OAuth error. */
  refuse: string | undefined;
}

export const OIDC_CLIENTS: Record<string, { secret: string; scope: string }> = {
  reader: { secret: 'reader-secret-0123456789', scope: 'mcp tools:read' },
  admin: { secret: 'admin-secret-0123456789', scope: 'mcp tools:read admin' },
  outsider: { secret: 'outsider-secret-0123456789', scope: 'tools:read' },
  gateway: { secret: 'gateway-secret-0123456789', scope: 'upstream' },
};

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export async function startOidcProvider(): Promise<OidcProvider> {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'oidc-1', alg: 'RS256', use: 'sig' };
  const server = createServer();
  const issuer = await listen(server);
  const provider = new Provider(issuer, {
    clients: Object.entries(OIDC_CLIENTS).map(([id, c]) => ({
      client_id: id,
      client_secret: c.secret,
      grant_types: ['client_credentials', TOKEN_EXCHANGE],
      redirect_uris: [],
      response_types: [],
      scope: c.scope,
    })),
    jwks: { keys: [jwk] },
    scopes: ['mcp', 'tools:read', 'admin', 'upstream'],
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        // Every resource is a JWT-token resource server here; the token's aud is the resource.
        getResourceServerInfo: (_ctx: unknown, resource: string) => ({
          scope: 'mcp tools:read admin upstream',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  } as ConstructorParameters<typeof Provider>[1]);
  const exchange: TokenExchangeGrant = { requests: [], ttl: 300, refuse: undefined };
  registerTokenExchange(provider, issuer, privateKey, exchange);
  server.on('request', provider.callback());
  return {
    issuer,
    exchange,
    jwksUri: `${issuer}/jwks`,
    tokenUrl: `${issuer}/token`,
    async token(client, scope, resource) {
      const c = OIDC_CLIENTS[client]!;
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client}:${c.secret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource }),
      });
      const body = (await res.json()) as { access_token?: string };
      if (res.status !== 200 || !body.access_token) throw new Error(`token: ${res.status} ${JSON.stringify(body)}`);
      return body.access_token;
    },
    close: () => closeServer(server),
  };
}

const EXCHANGE_PARAMS = ['subject_token', 'subject_token_type', 'requested_token_type', 'resource', 'audience', 'scope'];

/**
 * RFC 8693 as an issuer does it: the subject token must be one this issuer signed and still
 * valid; the new token names the same `sub`, is for the requested resource (or audience), and
 * records the exchanging client as the actor (`act`).
 */
function registerTokenExchange(provider: Provider, issuer: string, privateKey: KeyObject, grant: TokenExchangeGrant): void {
  const publicKey = createPublicKey(privateKey);
  const refuse = (ctx: { status: number; body: unknown }, error: string) => {
    ctx.status = 400;
    ctx.body = { error, error_description: 'refused by the test issuer' };
  };
  provider.registerGrantType(
    TOKEN_EXCHANGE,
    async (ctx) => {
      const params = ctx.oidc.params as Record<string, string | undefined>;
      const client = ctx.oidc.client!.clientId;
      grant.requests.push({ client, params: { ...params } });
      if (grant.refuse) return refuse(ctx, grant.refuse);
      if (params.subject_token_type !== ACCESS_TOKEN_TYPE || !params.subject_token) return refuse(ctx, 'invalid_request');
      let subject: JWTPayload;
      try {
        subject = (await jwtVerify(params.subject_token, publicKey, { issuer })).payload;
      } catch {
        return refuse(ctx, 'invalid_grant');
      }
      const audience = params.resource ?? params.audience;
      if (!audience) return refuse(ctx, 'invalid_target');
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ sub: subject.sub, client_id: client, scope: params.scope, act: { sub: client } })
        .setProtectedHeader({ alg: 'RS256', kid: 'oidc-1', typ: 'at+jwt' })
        .setIssuer(issuer)
        .setAudience(audience)
        .setIssuedAt(now)
        .setExpirationTime(now + grant.ttl)
        .setJti(randomUUID())
        .sign(privateKey);
      ctx.body = { access_token: token, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: grant.ttl };
    },
    EXCHANGE_PARAMS,
  );
}

export interface TestIssuer {
  readonly issuer: string;
  readonly jwksUri: string;
  /** The published public keys. */
  readonly jwks: { keys: JWK[] };
  readonly publicKey: KeyObject;
  readonly kid: string;
  /** How many times the JWKS was fetched. */
  fetches: number;
  sign(claims: JWTPayload, opts?: { key?: KeyObject; kid?: string; alg?: string }): Promise<string>;
  /** A new key pair, published (or not) in the JWKS. */
  addKey(publish: boolean): Promise<{ privateKey: KeyObject; kid: string }>;
  close(): Promise<void>;
}

export async function startTestIssuer(): Promise<TestIssuer> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks: { keys: JWK[] } = { keys: [{ ...(await exportJWK(publicKey)), kid: 'test-1', alg: 'ES256', use: 'sig' }] };
  const state = { fetches: 0 };
  const server = createServer((_req, res) => {
    state.fetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks));
  });
  const base = await listen(server);
  const issuer: TestIssuer = {
    issuer: `${base}/`,
    jwksUri: `${base}/jwks.json`,
    jwks,
    publicKey,
    kid: 'test-1',
    get fetches() {
      return state.fetches;
    },
    set fetches(n: number) {
      state.fetches = n;
    },
    async sign(claims, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ iat: now, exp: now + 300, iss: issuer.issuer, ...claims })
        .setProtectedHeader({ alg: opts.alg ?? 'ES256', kid: opts.kid ?? 'test-1', typ: 'at+jwt' })
        .sign(opts.key ?? privateKey);
    },
    async addKey(publish) {
      const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const kid = `test-${jwks.keys.length + 1}-${publish ? 'pub' : 'secret'}`;
      if (publish) jwks.keys.push({ ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' });
      return { privateKey: pair.privateKey, kid };
    },
    close: () => closeServer(server),
  };
  return issuer;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A JWT with any header and payload and the given signature bytes: for tokens no library would sign. */
export function rawJwt(header: Record<string, unknown>, payload: Record<string, unknown>, signature = ''): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part(header)}.${part(payload)}.${signature}`;
}
