import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import type { AuthConfig, GatewayConfig, ServerPolicy } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import { headerValue } from '../protocol/headers.ts';
import { certificatePrincipal } from './certificate.ts';
import { JwtVerifier, TokenError } from './jwt.ts';
import { claimsMatch, missingScopes } from './policy.ts';
import type { Principal } from './principal.ts';
import { stampCallerToken, type CallerTokens } from '../upstream/token-exchange.ts';
import { bearerChallenge, resourceUrls } from './resource.ts';

/**
 * The gateway's front-door check (auth.mode jwt or mtls): who is calling, and may they use this
 * server at all. Per-item rules (tools, resources, prompts) are applied later by `guard.ts`.
 * Failures are GatewayErrors carrying their `WWW-Authenticate` challenge.
 */
export class Authenticator {
  readonly #auth: AuthConfig;
  readonly #trustProxy: boolean;
  readonly #servers: GatewayConfig['servers'];
  readonly #jwt: JwtVerifier | undefined;
  /** Audiences a token for a server without a policy may name (the HTTP layer refuses unknown server names first). */
  readonly #anyAudience: readonly string[];
  readonly #certPrincipals = new WeakMap<TLSSocket, Principal | GatewayError>();
  /** Set when an upstream exchanges callers' tokens (src/upstream/token-exchange.ts): validated tokens are kept for it. */
  readonly #callers: CallerTokens | undefined;

  constructor(config: GatewayConfig, callers?: CallerTokens) {
    this.#callers = callers;
    this.#auth = config.auth;
    this.#trustProxy = config.listen.trustProxy !== false;
    this.#servers = config.servers;
    this.#jwt = config.auth.mode === 'jwt' ? new JwtVerifier(config.auth) : undefined;
    this.#anyAudience = [...new Set([...config.auth.audience, ...Object.values(config.servers).flatMap((s) => s.policy.audience)])];
  }

  get mode(): AuthConfig['mode'] {
    return this.#auth.mode;
  }

  policy(server: string): ServerPolicy | undefined {
    // Own keys only: `constructor` or `toString` is no server's name.
    return Object.hasOwn(this.#servers, server) ? this.#servers[server]!.policy : undefined;
  }

  /** Scopes a client should ask for to use `server`: the server's required ones. */
  scopesFor(server: string): readonly string[] {
    return this.policy(server)?.rule.scopes ?? this.#auth.rule.scopes;
  }

  async authenticate(request: FastifyRequest, server: string): Promise<Principal> {
    const policy = this.policy(server);
    const principal = this.#jwt ? await this.#bearer(request, server, policy) : this.#certificate(request);
    const rule = policy?.rule ?? this.#auth.rule;
    const missing = missingScopes(rule, principal);
    if (missing.length > 0) {
      throw this.#challenge(new GatewayError('MCPGW_ERR_INSUFFICIENT_SCOPE', `needs ${missing.join(' ')}`), request, server, 'insufficient_scope', rule.scopes);
    }
    if (!claimsMatch(rule, principal)) throw this.#challenge(new GatewayError('MCPGW_ERR_FORBIDDEN'), request, server, 'insufficient_scope');
    return principal;
  }

  async #bearer(request: FastifyRequest, server: string, policy: ServerPolicy | undefined): Promise<Principal> {
    const header = headerValue(request.headers.authorization);
    // RFC 6750: no credentials (or another scheme) → a challenge without an error code.
    if (!header || !/^bearer(\s|$)/i.test(header)) {
      throw this.#challenge(new GatewayError('MCPGW_ERR_UNAUTHORIZED', 'send Authorization: Bearer <token>'), request, server, undefined, this.scopesFor(server));
    }
    const token = header.slice(6).trim();
    try {
      const principal = await this.#jwt!.verify(token, policy?.audience ?? this.#anyAudience);
      if (this.#callers) {
        // Only this token, now validated, may be exchanged for an upstream on the caller's behalf.
        const caller = { token, principal: principal.id, expiresAt: Number(principal.claims.exp) * 1000 };
        stampCallerToken(request.headers, caller);
        this.#callers.remember(caller);
      }
      return principal;
    } catch (err) {
      if (err instanceof TokenError && err.unavailable) throw new GatewayError('MCPGW_ERR_AUTH_UNAVAILABLE', undefined, { cause: err.cause });
      const reason = err instanceof TokenError ? err.reason : 'token rejected';
      throw this.#challenge(new GatewayError('MCPGW_ERR_INVALID_TOKEN', reason, { cause: err }), request, server, 'invalid_token');
    }
  }

  #certificate(request: FastifyRequest): Principal {
    const socket = request.raw.socket as TLSSocket;
    const known = this.#certPrincipals.get(socket);
    if (known instanceof GatewayError) throw known;
    if (known) return known;
    const result = this.#mapCertificate(socket);
    // One TLS connection presents one certificate: map it once per connection.
    if (socket.encrypted) this.#certPrincipals.set(socket, result);
    if (result instanceof GatewayError) throw result;
    return result;
  }

  #mapCertificate(socket: TLSSocket): Principal | GatewayError {
    if (!socket.encrypted || !socket.authorized) return new GatewayError('MCPGW_ERR_UNAUTHORIZED', 'present a client certificate the gateway trusts');
    const cert = socket.getPeerX509Certificate();
    if (!cert) return new GatewayError('MCPGW_ERR_UNAUTHORIZED', 'present a client certificate the gateway trusts');
    return certificatePrincipal(cert, this.#auth.clientCerts);
  }

  #challenge(err: GatewayError, request: FastifyRequest, server: string, error?: 'invalid_token' | 'insufficient_scope', scopes?: readonly string[]): GatewayError {
    // Bearer challenges only make sense for OAuth; a certificate caller gets the status alone.
    if (this.#jwt) err.headers = { 'www-authenticate': bearerChallenge(resourceUrls(this.#auth, this.#trustProxy, request, server).metadata, error, scopes) };
    return err;
  }
}
