import type { ReplicaSnapshot } from './types.ts';

/**
 * Load and health of one upstream replica, as this gateway replica sees it. Ejection follows
 * nginx's `max_fails`/`fail_timeout`: `maxFails` failures within `failTimeoutMs` take the replica
 * out for `failTimeoutMs`; after that it is tried again, and one more failure ejects it at once.
 *
 * That is the replica's circuit breaker, one signal for both: closed while it serves; open while
 * ejected (no new sessions; a server whose every replica is open answers 503 at once); half-open
 * once the ejection ran out — one trial request at a time until one succeeds (closed) or fails
 * (open again). Failures come from the transport (connection refused, timeouts, 502/503/504),
 * from retries of them, and from probes.
 */
export class ReplicaState {
  /** The replica's public name, unique within its server: its key in session ids, metrics and logs. */
  readonly key: string;
  /** Requests waiting for or reading a response (non-stream). */
  inflight = 0;
  /** Open SSE streams (GET streams, POST response streams, stdio children count here too). */
  streams = 0;
  /** Exponentially weighted response-header latency in ms; breaks load ties. */
  latencyMs = 0;
  ejectedUntil = 0;
  #failures = 0;
  #firstFailureAt = 0;
  #probation = false;
  readonly #maxFails: number;
  readonly #failTimeoutMs: number;

  constructor(key: string, maxFails: number, failTimeoutMs: number) {
    this.key = key;
    this.#maxFails = maxFails;
    this.#failTimeoutMs = failTimeoutMs;
  }

  get load(): number {
    return this.inflight + this.streams;
  }

  available(now: number): boolean {
    if (this.ejectedUntil === 0) return !this.#probation || this.inflight === 0;
    if (now < this.ejectedUntil) return false;
    // Back from ejection: on probation (half-open) until it answers once.
    this.ejectedUntil = 0;
    this.#probation = true;
    this.#failures = 0;
    return this.inflight === 0;
  }

  /** The breaker as of `now` (see the class comment). */
  breaker(now = Date.now()): ReplicaSnapshot['breaker'] {
    if (this.ejectedUntil !== 0) return now < this.ejectedUntil ? 'open' : 'half-open';
    return this.#probation ? 'half-open' : 'closed';
  }

  get ejected(): boolean {
    return this.ejectedUntil !== 0 && Date.now() < this.ejectedUntil;
  }

  snapshot(now = Date.now()): ReplicaSnapshot {
    const breaker = this.breaker(now);
    return { key: this.key, inflight: this.inflight, streams: this.streams, load: this.load, ejected: breaker === 'open', breaker };
  }

  /** Records a failure; true when this failure ejected the replica. */
  fail(now: number): boolean {
    if (this.#maxFails === 0) return false;
    if (this.ejectedUntil !== 0 && now < this.ejectedUntil) return false;
    if (this.#failures === 0 || now - this.#firstFailureAt > this.#failTimeoutMs) {
      this.#failures = 0;
      this.#firstFailureAt = now;
    }
    this.#failures++;
    if (this.#probation || this.#failures >= this.#maxFails) {
      this.ejectedUntil = now + this.#failTimeoutMs;
      this.#failures = 0;
      this.#probation = false;
      return true;
    }
    return false;
  }

  succeed(latencyMs?: number): void {
    this.#failures = 0;
    this.#probation = false;
    if (latencyMs !== undefined) this.latencyMs = this.latencyMs === 0 ? latencyMs : this.latencyMs * 0.8 + latencyMs * 0.2;
  }
}

/**
 * Least connections: the available replica with the lowest load; among equals, two picked at
 * random (power of two choices) and the clearly faster one wins, else the first of the two.
 * "Clearly" matters: at low traffic every replica ties at zero load, and preferring a replica
 * for a latency noise of a few percent would send it all the new sessions.
 */
const CLEARLY_FASTER = 0.7;

/** True when at least one replica can take new sessions (ejected ones whose time is up can). */
export function anyAvailable(replicas: readonly ReplicaState[], now = Date.now()): boolean {
  return replicas.some((r) => r.ejectedUntil === 0 || now >= r.ejectedUntil);
}

export function pickLeastLoaded<R extends ReplicaState>(replicas: readonly R[], now: number, exclude?: ReadonlySet<string>): R | undefined {
  let best: R[] = [];
  let bestLoad = Infinity;
  for (const r of replicas) {
    if (exclude?.has(r.key) || !r.available(now)) continue;
    const load = r.load;
    if (load < bestLoad) {
      bestLoad = load;
      best = [r];
    } else if (load === bestLoad) {
      best.push(r);
    }
  }
  if (best.length <= 1) return best[0];
  const i = Math.floor(Math.random() * best.length);
  let j = Math.floor(Math.random() * (best.length - 1));
  if (j >= i) j++;
  const a = best[i]!;
  const b = best[j]!;
  return b.latencyMs < a.latencyMs * CLEARLY_FASTER ? b : a;
}
