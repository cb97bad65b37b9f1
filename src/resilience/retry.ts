import { GatewayError } from '../errors.ts';
import { NOT_TAKEN } from '../upstream/http.ts';

/**
 * When a failed upstream call may be sent again. Only transient failures, where the upstream did
 * not answer: the connection was refused or reset before a response, or a proxy/upstream said
 * 502/503/504. And only calls that are safe to repeat — the retry stage (src/pipeline/retry.ts) decides that.
 */

/** Failures before any response: the upstream never saw the request, or never answered it. */
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', NOT_TAKEN]);
export const RETRY_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/** True for an error thrown by an upstream call that failed before any response. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof GatewayError)) return false;
  for (let e: unknown = err.cause; e !== null && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
  }
  return false;
}

/** Exponential backoff with full jitter: uniform in [0, min(max, base·2^(retry−1))]. */
export function backoffMs(retry: number, baseMs: number, maxMs: number, random = Math.random): number {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** (retry - 1)));
}

/**
 * How many retries an upstream replica may receive, so retries cannot multiply load when it is
 * in trouble: every request deposits `ratio` of a retry, every retry withdraws one, and
 * `minPerSecond` accrue over time for quiet periods (as Finagle's retry budget). The balance is
 * capped at ten seconds' worth (at least 10), so a long healthy spell cannot save up a storm.
 */
export class RetryBudget {
  readonly #ratio: number;
  readonly #minPerSecond: number;
  readonly #cap: number;
  #balance: number;
  #at: number;

  constructor(ratio: number, minPerSecond: number, now = Date.now()) {
    this.#ratio = ratio;
    this.#minPerSecond = minPerSecond;
    this.#cap = Math.max(10, minPerSecond * 10);
    this.#balance = minPerSecond;
    this.#at = now;
  }

  /** One request sent (its first attempt). */
  deposit(now = Date.now()): void {
    this.#accrue(now);
    this.#balance = Math.min(this.#cap, this.#balance + this.#ratio);
  }

  /** Takes one retry; false when the budget is spent. */
  withdraw(now = Date.now()): boolean {
    this.#accrue(now);
    // (with a little slack: ten deposits of 0.2 add up to 1.9999999999999998)
    if (this.#balance < 1 - 1e-9) return false;
    this.#balance -= 1;
    return true;
  }

  #accrue(now: number): void {
    const elapsed = now - this.#at;
    if (elapsed <= 0) return;
    this.#at = now;
    this.#balance = Math.min(this.#cap, this.#balance + (elapsed / 1000) * this.#minPerSecond);
  }
}
