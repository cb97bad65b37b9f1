import type { RateRule } from '../config/types.ts';
import type { RateLimitScope } from '../ops/metrics.ts';

/** One limit a request must pass: its bucket, its rule, and how many requests it counts as. */
export interface RateCheck {
  readonly key: string;
  readonly rule: RateRule;
  readonly cost: number;
  readonly scope: RateLimitScope;
}

export type RateVerdict = { readonly ok: true } | { readonly ok: false; readonly scope: RateLimitScope; readonly retryAfterMs: number };

/**
 * Rate limits as GCRA (the generic cell rate algorithm): a bucket holds one timestamp, the
 * "theoretical arrival time"; a rule of N per period lets N through at once and then one every
 * period/N. All checks of one request pass or none is charged, atomically. The Redis limiter is
 * shared by every replica; the memory one serves one replica (and stands in while Redis is down).
 */
export interface RateLimiter {
  take(checks: readonly RateCheck[]): Promise<RateVerdict>;
}

/** The GCRA step for one bucket: the new arrival time, or how long until the request would fit. */
export function gcra(tat: number, now: number, rule: RateRule, cost: number): { tat: number } | { retryAfterMs: number } {
  const interval = rule.periodMs / rule.requests;
  const next = Math.max(tat, now) + interval * cost;
  const over = next - now - rule.periodMs;
  return over > 0 ? { retryAfterMs: over } : { tat: next };
}

export class MemoryRateLimiter implements RateLimiter {
  readonly #buckets = new Map<string, number>();
  readonly #maxBuckets: number;

  constructor(maxBuckets = 100_000) {
    this.#maxBuckets = maxBuckets;
  }

  async take(checks: readonly RateCheck[]): Promise<RateVerdict> {
    return this.takeNow(checks, Date.now());
  }

  takeNow(checks: readonly RateCheck[], now: number): RateVerdict {
    const next: number[] = [];
    for (const c of checks) {
      const step = gcra(this.#buckets.get(c.key) ?? 0, now, c.rule, c.cost);
      if ('retryAfterMs' in step) return { ok: false, scope: c.scope, retryAfterMs: step.retryAfterMs };
      next.push(step.tat);
    }
    if (this.#buckets.size + checks.length > this.#maxBuckets) {
      // A bucket whose arrival time has passed is as good as absent.
      for (const [k, tat] of this.#buckets) if (tat <= now) this.#buckets.delete(k);
    }
    checks.forEach((c, i) => this.#buckets.set(c.key, next[i]!));
    return { ok: true };
  }
}
