import { request } from 'undici';
import { publicUrl } from '../config/redact.ts';
import type { UpstreamCredentialsConfig, UpstreamTlsConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';

/**
 * What the gateway presents to an upstream: its own credentials, never the caller's (no token
 * passthrough). A fixed header value from a file or environment variable, or an OAuth 2.1
 * client-credentials access token the gateway fetches, caches until shortly before it expires,
 * and fetches once for all concurrent requests.
 */
export class UpstreamCredentials {
  readonly header: string;
  readonly #cfg: UpstreamCredentialsConfig;
  #token: { value: string; until: number } | undefined;
  #pending: Promise<string> | undefined;

  constructor(cfg: UpstreamCredentialsConfig) {
    this.header = cfg.header;
    this.#cfg = cfg;
  }

  /** The header value; a Promise only while a token is being fetched. */
  value(): string | Promise<string> {
    if (this.#cfg.value !== undefined) return this.#cfg.value;
    if (this.#token && this.#token.until > Date.now()) return this.#token.value;
    return (this.#pending ??= this.#fetch().finally(() => {
      this.#pending = undefined;
    }));
  }

  /** The upstream refused the token (401): fetch a new one next time. */
  invalidate(): void {
    this.#token = undefined;
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
