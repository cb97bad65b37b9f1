/**
 * At most `size` requests at once to one upstream replica (its `connections` cap), the others
 * waiting in order. The gateway keeps this queue itself rather than leaving it to undici's pool:
 * a request that gives up waiting (its time limit, its client gone) leaves the queue at once,
 * instead of staying in the pool's queue until a connection frees and then opening and closing
 * one for nothing; and the pool's own header timeout measures the upstream only.
 */
export class RequestGate {
  readonly size: number;
  #busy = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(size: number) {
    this.size = size;
  }

  /**
   * Resolves with a release function once a slot is held; `false` when `timeoutMs` passed (or
   * `signal` aborted) first, and the request should not be sent.
   */
  acquire(timeoutMs: number, signal?: AbortSignal): Promise<(() => void) | false> {
    if (this.#busy < this.size && this.#waiting.length === 0) {
      this.#busy++;
      return Promise.resolve(this.#releaser());
    }
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const give = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', giveUp);
        resolve(this.#releaser());
      };
      const giveUp = () => {
        const at = this.#waiting.indexOf(give);
        if (at < 0) return;
        this.#waiting.splice(at, 1);
        clearTimeout(timer);
        signal?.removeEventListener('abort', giveUp);
        resolve(false);
      };
      const timer = setTimeout(giveUp, timeoutMs);
      signal?.addEventListener('abort', giveUp, { once: true });
      this.#waiting.push(give);
    });
  }

  /** Requests holding a slot, and waiting for one (for tests and metrics). */
  get load(): { busy: number; waiting: number } {
    return { busy: this.#busy, waiting: this.#waiting.length };
  }

  #releaser(): () => void {
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const next = this.#waiting.shift();
      // The slot passes straight to the next in line.
      if (next) next();
      else this.#busy--;
    };
  }
}
