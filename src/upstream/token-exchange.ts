import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import { publicUrl } from '../config/redact.ts';
import type { TokenExchangeConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';

/**
 * OAuth 2.0 Token Exchange (RFC 8693) on behalf of the caller: the access token the front door
 * validated is exchanged at the configured token endpoint for one whose audience is the upstream
 * (RFC 8707 `resource`, or `audience`), so the upstream learns who the user is without ever
 * seeing the caller's own token. Exchanged tokens are cached per caller token and replica until
 * shortly before they expire, in a bounded LRU; concurrent requests with one token share one
 * exchange. Nothing here logs: tokens reach only the token endpoint and the upstream.
 */

/** A bearer token the front door validated, and whose it is. */
export interface CallerToken {
  readonly token: string;
  /** The principal id (src/auth/principal.ts) the token names. */
  readonly principal: string;
  /** When the token expires (`exp`), in ms since the epoch. */
  readonly expiresAt: number;
}

/**
 * Where the Authenticator leaves the validated token on the request's own headers. A symbol:
 * no HTTP header can spell it (a caller cannot forge one), and neither JSON nor the logger
 * prints it. A header object the gateway writes itself carries none.
 */
const VALIDATED = Symbol('mcpgw.validatedBearer');

type Stamped = IncomingHttpHeaders & { [VALIDATED]?: CallerToken };

export function stampCallerToken(headers: IncomingHttpHeaders, caller: CallerToken): void {
  (headers as Stamped)[VALIDATED] = caller;
}

/** The validated token of the request these headers came with, if the front door checked one. */
export function callerTokenOf(headers: IncomingHttpHeaders): CallerToken | undefined {
  return (headers as Stamped)[VALIDATED];
}

/**
 * Each principal's most recent validated token, for what the gateway sends upstream on a caller's
 * behalf without the caller's request at hand: the initialize of a session it pools for the
 * caller, its cancellations and stream reopenings, the 2024-11-05 door's messages. Kept only when
 * an upstream exchanges tokens; at most `max` principals, the least recently seen going first.
 */
/** A token is a kilobyte or two: this bounds the registry to some tens of megabytes. */
export const CALLER_TOKENS_MAX = 10_000;

export class CallerTokens {
  readonly #max: number;
  readonly #byPrincipal = new Map<string, CallerToken>();

  constructor(max: number) {
    this.#max = max;
  }

  remember(caller: CallerToken): void {
    this.#byPrincipal.delete(caller.principal);
    this.#byPrincipal.set(caller.principal, caller);
    if (this.#byPrincipal.size > this.#max) this.#byPrincipal.delete(this.#byPrincipal.keys().next().value!);
  }

  /** The principal's latest token, unless it has expired. */
  latest(principal: string): CallerToken | undefined {
    const caller = this.#byPrincipal.get(principal);
    if (caller && caller.expiresAt > Date.now()) return caller;
    return undefined;
  }
}

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** A token endpoint's answer is a small JSON object; anything longer is refused unread. */
const MAX_ANSWER_BYTES = 64 * 1024;
/** OAuth errors that say the gateway's own client registration is wrong, not the caller's token. */
const CLIENT_ERRORS = new Set(['invalid_client', 'unauthorized_client', 'unsupported_grant_type']);

/** One replica's exchanges (src/upstream/http.ts holds one per replica that has `tokenExchange`). */
export class TokenExchanger {
  readonly #cfg: TokenExchangeConfig;
  readonly #prefix: string;
  /** sha256(caller token) → the header value; Map order is recency (a hit moves to the end). */
  readonly #cache = new Map<string, { value: string; until: number }>();
  /** Exchanges under way, one per caller token; each ends within `timeoutMs`. */
  readonly #pending = new Map<string, Promise<string>>();

  constructor(cfg: TokenExchangeConfig, prefix: string) {
    this.#cfg = cfg;
    this.#prefix = prefix;
  }

  /** The header value for a request on `caller`'s behalf; a Promise only while an exchange runs. */
  value(caller: CallerToken): string | Promise<string> {
    const key = keyOf(caller);
    const hit = this.#cache.get(key);
    if (hit) {
      this.#cache.delete(key);
      if (hit.until > Date.now()) {
        this.#cache.set(key, hit);
        return hit.value;
      }
    }
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#exchange(caller, key).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    return pending;
  }

  /** The upstream refused the exchanged token (401): exchange again next time. */
  invalidate(caller: CallerToken): void {
    this.#cache.delete(keyOf(caller));
  }

  /** How many exchanged tokens are held (for tests of the cap). */
  get size(): number {
    return this.#cache.size;
  }

  async #exchange(caller: CallerToken, key: string): Promise<string> {
    const cfg = this.#cfg;
    const form = new URLSearchParams({ grant_type: TOKEN_EXCHANGE_GRANT, subject_token: caller.token, subject_token_type: ACCESS_TOKEN_TYPE, requested_token_type: ACCESS_TOKEN_TYPE });
    if (cfg.resource) form.set('resource', cfg.resource);
    if (cfg.audience) form.set('audience', cfg.audience);
    if (cfg.scope) form.set('scope', cfg.scope);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (cfg.clientAuth === 'client_secret_post') {
      form.set('client_id', cfg.clientId);
      form.set('client_secret', cfg.clientSecret);
    } else {
      // RFC 6749 §2.3.1: client id and secret are form-encoded before the Basic encoding.
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(cfg.clientId)}:${encodeURIComponent(cfg.clientSecret)}`).toString('base64')}`;
    }
    // The detail reaches the caller and the log: the URL without userinfo or query, never a token.
    const where = `token endpoint ${publicUrl(cfg.tokenUrl)}`;
    let status: number;
    let body: { access_token?: unknown; expires_in?: unknown; error?: unknown };
    // One time limit for the whole exchange, the answer's body included: a slow endpoint fails the call, it does not hang it.
    const signal = AbortSignal.timeout(cfg.timeoutMs);
    try {
      const res = await request(cfg.tokenUrl, { method: 'POST', headers, body: form.toString(), signal });
      status = res.statusCode;
      body = parseAnswer(await readBounded(res.body));
    } catch (err) {
      const why = signal.aborted ? `did not answer within ${cfg.timeoutMs} ms` : 'unreachable';
      throw new GatewayError('MCPGW_ERR_TOKEN_EXCHANGE_FAILED', `${where} ${why}`, { cause: err });
    }
    // Visible ASCII only (RFC 6750 b64token is narrower still): it becomes a header value.
    if (status === 200 && typeof body.access_token === 'string' && /^[\x21-\x7e]{1,16384}$/.test(body.access_token)) {
      const value = this.#prefix + body.access_token;
      const lifetime = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 300;
      // Renewed a little early (a fifth of the lifetime, at most a minute), and never kept past the caller's own token.
      const until = Math.min(Date.now() + (lifetime - Math.min(60, lifetime / 5)) * 1000, caller.expiresAt);
      if (until > Date.now()) this.#remember(key, { value, until });
      return value;
    }
    // An OAuth error code is a registered token (RFC 6749 §5.2); anything else is named by the status alone.
    const error = typeof body.error === 'string' && /^[\x20-\x7e]{1,64}$/.test(body.error) ? body.error : undefined;
    if (status >= 400 && status < 500 && error !== undefined && !CLIENT_ERRORS.has(error)) {
      throw new GatewayError('MCPGW_ERR_TOKEN_EXCHANGE_DENIED', `${where} refused: ${error}`);
    }
    throw new GatewayError('MCPGW_ERR_TOKEN_EXCHANGE_FAILED', `${where} answered ${error ?? `HTTP ${status}`}`);
  }

  #remember(key: string, entry: { value: string; until: number }): void {
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    // Every caller can make the gateway hold an entry: the least recently used goes past the cap.
    if (this.#cache.size > this.#cfg.cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
  }
}

function keyOf(caller: CallerToken): string {
  return createHash('sha256').update(caller.token).digest('base64url');
}

async function readBounded(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    // Leaving the loop ends the iteration, which destroys the body.
    if (size > MAX_ANSWER_BYTES) return '';
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseAnswer(text: string): { access_token?: unknown; expires_in?: unknown; error?: unknown } {
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
