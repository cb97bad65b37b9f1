/**
 * SEP-1699 (2025-11-25): an upstream may end a request's SSE stream before its answer, having
 * sent an event id (often a priming event with a `retry:` field), and expect to be polled — a
 * GET with that Last-Event-ID after `retry` ms — for the rest. The gateway polls for its client,
 * whatever door the client came in by, so the client's own stream simply goes on; a broken
 * upstream stream is picked up again the same way. This is when to poll, and when to give up.
 */

/** The longest the gateway waits on an upstream's `retry:` (its client waits meanwhile, on an open stream). */
export const MAX_POLL_WAIT_MS = 10_000;
/** A stream ended sooner than this after it was opened is a quick end: several in a row back off. */
const QUICK_END_MS = 1_000;
/** The second quick end in a row waits at least this, doubled with each one after it. */
const QUICK_BACKOFF_MS = 100;

/**
 * The polls of one upstream stream. Each waits the upstream's `retry:` (at most
 * MAX_POLL_WAIT_MS); streams the upstream ends as soon as they are opened also back off
 * (100 ms, 200 ms … up to MAX_POLL_WAIT_MS), so an upstream that accepts a poll and ends it at
 * once is not asked again and again; and once `limitMs` would pass without a message, there is
 * no next poll. One instance per stream, on the path that already reads it: no timers of its own.
 */
export class PollSchedule {
  readonly #limitMs: number;
  #retryMs = 0;
  #openedAt: number;
  #quietSince: number;
  #quickEnds = 0;

  /** `limitMs`: the longest the upstream may be polled without sending a message (the request's time limit). */
  constructor(limitMs = Infinity, now = Date.now()) {
    this.#limitMs = limitMs;
    this.#openedAt = this.#quietSince = now;
  }

  /** The upstream's `retry:` field (the last one counts). */
  retry(ms: number): void {
    this.#retryMs = Math.min(Math.max(0, ms), MAX_POLL_WAIT_MS);
  }

  /** A stream (the first one, or a poll) is open. */
  opened(now = Date.now()): void {
    this.#openedAt = now;
  }

  /**
   * A message came: the quiet time starts over. (Called for every message: no clock read when
   * nothing is bounded.) The quick-end backoff does not: an upstream that answers every poll
   * with one message and ends it at once with `retry: 0` would otherwise be polled in a loop.
   */
  message(now?: number): void {
    if (this.#limitMs !== Infinity) this.#quietSince = now ?? Date.now();
  }

  /** The stream ended (or broke) before its answer: how long to wait before the next poll, or undefined to give up. */
  next(now = Date.now()): number | undefined {
    this.#quickEnds = now - this.#openedAt < QUICK_END_MS ? this.#quickEnds + 1 : 0;
    const backoff = this.#quickEnds < 2 ? 0 : QUICK_BACKOFF_MS * 2 ** Math.min(this.#quickEnds - 2, 16);
    const wait = Math.max(this.#retryMs, Math.min(backoff, MAX_POLL_WAIT_MS));
    return now + wait - this.#quietSince > this.#limitMs ? undefined : wait;
  }
}
