import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWK, type JWTVerifyGetKey, type KeyObject } from 'jose';
import type { AuthConfig, IssuerConfig } from '../config/types.ts';
import { principalId, scopesOf, type Principal } from './principal.ts';

/** Why a token was refused; the HTTP layer turns it into 401 `invalid_token` (or 503). */
export class TokenError extends Error {
  readonly reason: string;
  /** The issuer's keys could not be fetched: not the caller's fault. */
  readonly unavailable: boolean;
  constructor(reason: string, unavailable = false, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = 'TokenError';
    this.reason = reason;
    this.unavailable = unavailable;
  }
}

interface Issuer {
  readonly config: IssuerConfig;
  readonly getKey: JWTVerifyGetKey;
}

interface Verified {
  readonly principal: Principal;
  readonly audience: readonly string[];
  /** `exp` in seconds. */
  readonly exp: number;
}

// Three base64url segments; an unsecured JWT (`alg: none`) has an empty third one and fails here.
const JWT_SHAPE = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}$/;
const MAX_TOKEN_LENGTH = 16_384;
// Verified tokens are remembered (two generations, bounded) so a client sending the same token
// on every request costs a Map lookup, not a signature check; never longer than this.
const CACHE_GENERATION = 10_000;
const CACHE_MAX_MS = 60_000;

/**
 * Validates JWT access tokens from the configured issuers: signature with the issuer's keys
 * (remote JWKS cached by jose and refetched on an unknown `kid` at most once per cooldown, and/or
 * static keys), `iss`, `aud`, `exp` (required), `nbf`, within a small clock tolerance, and only
 * with the asymmetric algorithms allowed. A JWK set never yields an HMAC key, so a token signed
 * with HS256 using the public key as the secret cannot verify.
 */
export class JwtVerifier {
  readonly #issuers = new Map<string, Issuer>();
  readonly #toleranceSec: number;
  #current = new Map<string, Verified & { until: number }>();
  #previous = new Map<string, Verified & { until: number }>();

  constructor(auth: AuthConfig) {
    this.#toleranceSec = auth.clockToleranceSec;
    for (const config of auth.issuers) this.#issuers.set(config.issuer, { config, getKey: keyResolver(config, auth) });
  }

  /** The caller behind a token accepted for one of `audiences`; throws TokenError. */
  async verify(token: string, audiences: readonly string[]): Promise<Principal> {
    const now = Date.now();
    let verified = this.#cached(token, now);
    if (!verified) {
      verified = await this.#verify(token);
      this.#remember(token, verified, now);
    }
    if (verified.exp + this.#toleranceSec <= now / 1000) throw new TokenError('token expired');
    if (!verified.audience.some((a) => audiences.includes(a))) throw new TokenError('token audience is not this resource');
    return verified.principal;
  }

  async #verify(token: string): Promise<Verified> {
    if (token.length > MAX_TOKEN_LENGTH || !JWT_SHAPE.test(token)) throw new TokenError('malformed token');
    let unverified: JWTPayload;
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
      unverified = decodeJwt(token);
    } catch {
      throw new TokenError('malformed token');
    }
    const issuer = typeof unverified.iss === 'string' ? this.#issuers.get(unverified.iss) : undefined;
    if (!issuer) throw new TokenError('token issuer is not trusted');
    if (typeof alg !== 'string' || !(issuer.config.algorithms as readonly string[]).includes(alg)) throw new TokenError('token algorithm is not allowed');
    const options = {
      issuer: issuer.config.issuer,
      algorithms: [...issuer.config.algorithms],
      clockTolerance: this.#toleranceSec,
      requiredClaims: ['exp'],
    };
    let payload: JWTPayload;
    try {
      payload = (await verifyWithAnyKey(token, issuer.getKey, options)).payload;
    } catch (err) {
      throw tokenError(err);
    }
    // A token with a sub names a user; one without, the client its client_id names.
    const user = typeof payload.sub === 'string' && payload.sub ? payload.sub : undefined;
    const kind = user ? 'user' : 'client';
    const subject = user ?? (typeof payload.client_id === 'string' ? payload.client_id : '');
    if (!subject) throw new TokenError('token has no subject');
    const aud = payload.aud === undefined ? [] : Array.isArray(payload.aud) ? payload.aud : [payload.aud];
    const principal: Principal = {
      id: principalId(kind, issuer.config.issuer, subject),
      kind,
      issuer: issuer.config.issuer,
      subject,
      scopes: scopesOf(payload),
      claims: payload,
    };
    return { principal, audience: aud, exp: payload.exp! };
  }

  #cached(token: string, now: number): Verified | undefined {
    const hit = this.#current.get(token) ?? this.#previous.get(token);
    return hit && hit.until > now ? hit : undefined;
  }

  #remember(token: string, v: Verified, now: number): void {
    if (this.#current.size >= CACHE_GENERATION) {
      this.#previous = this.#current;
      this.#current = new Map();
    }
    this.#current.set(token, { ...v, until: Math.min(now + CACHE_MAX_MS, v.exp * 1000) });
  }
}

function keyResolver(config: IssuerConfig, auth: AuthConfig): JWTVerifyGetKey {
  const local = config.keys ? createLocalJWKSet({ keys: config.keys.keys.map((k) => ({ ...k }) as JWK) }) : undefined;
  const remote = config.jwksUri
    ? createRemoteJWKSet(new URL(config.jwksUri), { cacheMaxAge: auth.jwksCacheMaxAgeMs, cooldownDuration: auth.jwksCooldownMs, timeoutDuration: 5_000 })
    : undefined;
  if (local && remote) {
    return async (header, token) => {
      try {
        return await local(header, token);
      } catch (err) {
        if (err instanceof errors.JWKSNoMatchingKey) return remote(header, token);
        throw err;
      }
    };
  }
  return (local ?? remote)!;
}

type VerifyOptions = Parameters<typeof jwtVerify>[2];

/** jwtVerify, trying each candidate when several keys of a set match (no `kid` in the token). */
async function verifyWithAnyKey(token: string, getKey: JWTVerifyGetKey, options: VerifyOptions) {
  try {
    return await jwtVerify(token, getKey, options);
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err;
    for await (const key of err as unknown as AsyncIterable<KeyObject>) {
      try {
        return await jwtVerify(token, key, options);
      } catch (inner) {
        if (inner instanceof errors.JWSSignatureVerificationFailed) continue;
        throw inner;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

function tokenError(err: unknown): TokenError {
  if (err instanceof errors.JWTExpired) return new TokenError('token expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' || err.claim === 'iat') return new TokenError('token is not yet valid');
    return new TokenError(`token claim "${err.claim}" is invalid`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new TokenError('token signature is invalid');
  if (err instanceof errors.JWKSNoMatchingKey) return new TokenError('token key is unknown');
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return new TokenError('token algorithm is not allowed');
  if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid || err instanceof TypeError) {
    return new TokenError('issuer keys unavailable', true, { cause: err });
  }
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return new TokenError('malformed token');
  // The JWKS fetch failed (connection refused, HTTP error): the issuer is down, not the caller.
  return new TokenError('issuer keys unavailable', true, { cause: err });
}
