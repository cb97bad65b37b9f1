import { createHash } from 'node:crypto';

/** An authenticated caller: who it is (for sessions and the audit log) and what it holds (for policy). */
export interface Principal {
  /** Stable, opaque id sealed into the sessions it creates: a hash of issuer and subject. */
  readonly id: string;
  /** `iss` of the token, or `mtls` for a client certificate. */
  readonly issuer: string;
  readonly subject: string;
  readonly scopes: ReadonlySet<string>;
  /** Token claims (or certificate facts) that claim rules match against. */
  readonly claims: Readonly<Record<string, unknown>>;
}

export function principalId(issuer: string, subject: string): string {
  return createHash('sha256').update(issuer).update('\n').update(subject).digest('base64url').slice(0, 22);
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
