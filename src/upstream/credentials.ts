import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';
import { publicUrl } from '../config/redact.ts';
import type { UpstreamCredentialsConfig, UpstreamTlsConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import { type CallerToken, type CallerTokens, TokenExchanger, callerTokenOf } from './token-exchange.ts';

/**
 * On whose behalf a request goes upstream: its headers (the validated token the front door
 * stamped on them, or the gateway carried over to the headers it wrote for that request:
 * src/upstream/types.ts `forCaller`), the session's principal.
 */
export interface OnBehalfOf {
  readonly headers: IncomingHttpHeaders;
  /** The principal of the session the request belongs to ('' for none), or the caller a session is opened for. */
  readonly principal: string;
}

/**
 * What the gateway presents to an upstream instead of the caller's token (no token
 * passthrough). A fixed header value from a file or environment variable; an OAuth 2.1
 * client-credentials access token the gateway fetches, caches until shortly before it expires,
 * and fetches once for all concurrent requests; or a token for the caller, exchanged for
 * theirs (RFC 8693, src/upstream/token-exchange.ts).
 */
export class UpstreamCredentials {
  readonly header: string;
  readonly #cfg: UpstreamCredentialsConfig;
  #token: { value: string; until: number } | undefined;
  #pending: Promise<string> | undefined;
  readonly #exchanger: TokenExchanger | undefined;
  readonly #callers: CallerTokens | undefined;

  constructor(cfg: UpstreamCredentialsConfig, callers?: CallerTokens) {
    this.header = cfg.header;
    this.#cfg = cfg;
    this.#exchanger = cfg.tokenExchange ? new TokenExchanger(cfg.tokenExchange, cfg.prefix) : undefined;
    this.#callers = callers;
  }

  /** The header value for a request on `onBehalfOf`'s behalf; a Promise only while a token is being fetched. */
  value(onBehalfOf?: OnBehalfOf): string | Promise<string> {
    if (this.#cfg.value !== undefined) return this.#cfg.value;
    if (this.#exchanger) return this.#exchanger.value(this.#caller(onBehalfOf));
    if (this.#token && this.#token.until > Date.now()) return this.#token.value;
    return (this.#pending ??= this.#fetch().finally(() => {
      this.#pending = undefined;
    }));
  }

  /** The upstream refused the token (401): fetch (or exchange) a new one next time. */
  invalidate(onBehalfOf?: OnBehalfOf): void {
    this.#token = undefined;
    if (this.#exchanger) {
      const caller = this.#find(onBehalfOf);
      if (caller) this.#exchanger.invalidate(caller);
    }
  }

  /**
   * The validated token to exchange: the one this request came with, else — for what the gateway
   * sends on its own for a session — the session principal's latest. Never another caller's: a
   * request's token must name the session's principal.
   */
  #caller(onBehalfOf: OnBehalfOf | undefined): CallerToken {
    const caller = this.#find(onBehalfOf);
    if (caller) return caller;
    // Cannot happen through a front door (a session answers only its own principal), so it is named apart.
    const own = onBehalfOf && callerTokenOf(onBehalfOf.headers);
    if (own && own.principal !== onBehalfOf.principal) throw new GatewayError('MCPGW_ERR_TOKEN_EXCHANGE_FAILED', "the request's token is not of its session's principal");
    if (own) throw new GatewayError('MCPGW_ERR_TOKEN_EXCHANGE_FAILED', "the caller's token expired, and no newer one of theirs is known");
    throw new GatewayError('MCPGW_ERR_TOKEN_EXCHANGE_FAILED', 'no validated caller token for this request (one the gateway sends on its own, for no caller)');
  }

  #find(onBehalfOf: OnBehalfOf | undefined): CallerToken | undefined {
    if (!onBehalfOf) return undefined;
    const own = callerTokenOf(onBehalfOf.headers);
    if (own && own.principal !== onBehalfOf.principal && onBehalfOf.principal) return undefined;
    // What the gateway sends later for a request (an input_required round, a listen reopened) may
    // outlive the token that request came with: the principal's latest then.
    if (own && (own.expiresAt > Date.now() || !onBehalfOf.principal)) return own;
    return onBehalfOf.principal ? this.#callers?.latest(onBehalfOf.principal) : undefined;
  }

  async #fetch(): Promise<string> {
    const cc = this.#cfg.clientCredentials!;
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (cc.scope) form.set('scope', cc.scope);
    if (cc.resource) form.set('resource', cc.resource);
    if (cc.audience) form.set('audience', cc.audience);
    // RFC 6749 §2.3.1: client id and secret are form-encoded before the Basic encoding.
    const basic = Buffer.from(`${encodeURIComponent(cc.clientId)}:${encodeURIComponent(cc.clientSecret)}`).toString('base64');
    let status: number;
    let body: { access_token?: unknown; expires_in?: unknown; error?: unknown };
    try {
      const res = await request(cc.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: `Basic ${basic}` },
        body: form.toString(),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      status = res.statusCode;
      body = (await res.body.json().catch(() => ({}))) as typeof body;
    } catch (err) {
      throw new GatewayError('MCPGW_ERR_UPSTREAM_CREDENTIALS', `token endpoint ${publicUrl(cc.tokenUrl)} unreachable`, { cause: err });
    }
    if (status !== 200 || typeof body.access_token !== 'string' || !body.access_token) {
      const why = typeof body.error === 'string' ? body.error : `HTTP ${status}`;
      // The detail reaches the caller (and the log): the URL without userinfo or query.
      throw new GatewayError('MCPGW_ERR_UPSTREAM_CREDENTIALS', `token endpoint ${publicUrl(cc.tokenUrl)} refused: ${why}`);
    }
    const lifetime = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 300;
    // Renew a little early (a fifth of the lifetime, at most a minute) so no request carries a token about to lapse.
    const value = this.#cfg.prefix + body.access_token;
    this.#token = { value, until: Date.now() + (lifetime - Math.min(60, lifetime / 5)) * 1000 };
    return value;
  }
}

/** undici `connect` options for an upstream's TLS: its CA, the gateway's client certificate. */
export function upstreamTlsOptions(tls: UpstreamTlsConfig | undefined): Record<string, unknown> | undefined {
  if (!tls) return undefined;
  const out: Record<string, unknown> = {};
  if (tls.ca) out.ca = tls.ca;
  if (tls.cert) out.cert = tls.cert;
  if (tls.key) out.key = tls.key;
  if (tls.serverName) out.servername = tls.serverName;
  return out;
}
