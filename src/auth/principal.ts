import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * What names the caller: `user`, a token's `sub` (RFC 9068 puts a client's own id there in a
 * client_credentials token; the issuer keeps its subs apart); `client`, the `client_id` of a
 * token without `sub`; `cert`, a client certificate.
 */
export type PrincipalKind = 'user' | 'client' | 'cert';

/** An authenticated caller: who it is (for sessions and the audit log) and what it holds (for policy). */
export interface Principal {
  /**
   * Stable, opaque id of (kind, issuer, subject): sealed into the sessions the caller creates, and
   * the caller's key for rate limits, private cache entries and pooled upstream sessions.
   */
  readonly id: string;
  readonly kind: PrincipalKind;
  /** `iss` of the token, or `mtls` for a client certificate. */
  readonly issuer: string;
  readonly subject: string;
  readonly scopes: ReadonlySet<string>;
  /** Token claims (or certificate facts) that claim rules match against. */
  readonly claims: Readonly<Record<string, unknown>>;
}

/**
 * A hash of the JSON array [kind, issuer, subject]. JSON quotes every string and escapes what
 * could end one, lone surrogates included, so the text names exactly one tuple: no claim value —
 * a separator, a `client_id:` written into `sub`, an issuer called `mtls` — can spell another
 * caller's. (Writing the parts one after another with a separator between them, or handing the
 * hash a string UTF-8 cannot carry, makes two callers one.)
 */
export function principalId(kind: PrincipalKind, issuer: string, subject: string): string {
  return createHash('sha256').update(JSON.stringify([kind, issuer, subject])).digest('base64url').slice(0, 22);
}

/** Scopes of a token: the space-delimited `scope` (RFC 9068) or the `scp` list some issuers use. */
export function scopesOf(claims: Readonly<Record<string, unknown>>): Set<string> {
  const out = new Set<string>();
  if (typeof claims.scope === 'string') for (const s of claims.scope.split(' ')) if (s) out.add(s);
  if (Array.isArray(claims.scp)) {
    for (const s of claims.scp) if (typeof s === 'string') out.add(s);
  } else if (typeof claims.scp === 'string') {
    for (const s of claims.scp.split(' ')) if (s) out.add(s);
  }
  return out;
}

/**
 * Where the front door leaves the caller on a request's headers, for what acts for it further
 * down (a virtual server's member calls apply each member's policy and caps to it), with where
 * to report the names that policy hid (the request's audit line). A symbol: no HTTP header can
 * spell it, and neither JSON nor the logger prints it.
 */
const CALLER = Symbol('mcpgw.caller');

export interface StampedCaller {
  /** The checked caller; undefined when auth is off. */
  readonly principal: Principal | undefined;
  /** Whom per-caller caps count the request against: the principal's id, or the client's address when auth is off. */
  readonly holder: string;
  /** Names a policy further down hid from this caller (for the audit line's `denied`). */
  hid(names: readonly string[]): void;
}

type Stamped = IncomingHttpHeaders & { [CALLER]?: StampedCaller };

export function stampPrincipal<H extends IncomingHttpHeaders>(headers: H, caller: StampedCaller | undefined): H {
  if (caller) (headers as Stamped)[CALLER] = caller;
  return headers;
}

/** The caller the front door saw for the request these headers came with, if any. */
export function principalOf(headers: IncomingHttpHeaders): StampedCaller | undefined {
  return (headers as Stamped)[CALLER];
}
