import type { KeyObject } from 'node:crypto';
import { openArray, randomId, sealArray, sealKey } from './seal.ts';

/**
 * The gateway's own `Mcp-Session-Id`: AES-256-GCM over the routing facts a request needs, so any
 * replica holding the shared key can route a session with no store round-trip. The token is
 * opaque to clients and tamper-evident; it is not a credential (C binds it to a principal).
 */
export interface SessionClaims {
  /** Random id of this gateway session: the key of its deny-list entry and event log. */
  readonly id: string;
  readonly server: string;
  /** Which upstream replica owns the session: its public name (ReplicaState.key). */
  readonly upstream: string;
  /** The upstream's own session id, or '' when the upstream runs without sessions. */
  readonly upstreamSession: string;
  /** Instance id of the gateway replica holding the session's stdio child; '' for HTTP. */
  readonly node: string;
  /** The id of the principal that created the session (src/auth/principal.ts), '' when auth is off. */
  readonly principal: string;
  /** Protocol revision the client asked for in initialize. */
  readonly protocolVersion: string;
  /** Seconds since the epoch. */
  readonly issuedAt: number;
}

const VERSION = 1;
// Two generations of decoded tokens: a hit is a Map lookup instead of a decrypt, and the
// memory stays bounded without per-hit LRU bookkeeping.
const CACHE_GENERATION = 10_000;

export class SessionSealer {
  readonly #key: KeyObject;
  #current = new Map<string, SessionClaims>();
  #previous = new Map<string, SessionClaims>();

  constructor(secret: string | Buffer) {
    this.#key = sealKey(secret, 'session-token v1');
  }

  static newId(): string {
    return randomId(16);
  }

  seal(claims: SessionClaims): string {
    const values = [claims.id, claims.server, claims.upstream, claims.upstreamSession, claims.node, claims.principal, claims.protocolVersion, claims.issuedAt];
    const token = sealArray(this.#key, HEADER, values).toString('base64url');
    this.#remember(token, claims);
    return token;
  }

  /** The claims of a token this key sealed, or undefined for anything else. Never throws. */
  open(token: string): SessionClaims | undefined {
    const hit = this.#current.get(token);
    if (hit) return hit;
    const old = this.#previous.get(token);
    if (old) {
      this.#remember(token, old);
      return old;
    }
    if (token.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(token)) return undefined;
    const a = openArray(this.#key, HEADER, Buffer.from(token, 'base64url'), 8);
    if (!a) return undefined;
    const claims: SessionClaims = {
      id: String(a[0]),
      server: String(a[1]),
      upstream: String(a[2]),
      upstreamSession: String(a[3]),
      node: String(a[4]),
      principal: String(a[5]),
      protocolVersion: String(a[6]),
      issuedAt: Number(a[7]),
    };
    this.#remember(token, claims);
    return claims;
  }

  #remember(token: string, claims: SessionClaims): void {
    if (this.#current.size >= CACHE_GENERATION) {
      this.#previous = this.#current;
      this.#current = new Map();
    }
    this.#current.set(token, claims);
  }
}

const HEADER = Buffer.from([VERSION]);
