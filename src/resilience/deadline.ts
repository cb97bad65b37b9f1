/**
 * The time limit of one request: `idleMs` without activity (progress, any message on its
 * stream), and `maxMs` in all. One timer per request, re-armed only when it fires: activity just
 * records the time, so a stream of progress notifications costs no timer work.
 */
export class Deadline {
  readonly #idleMs: number;
  readonly #maxMs: number;
  readonly #onExpire: (reason: 'idle' | 'max') => void;
  readonly #started: number;
  #last: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(idleMs: number, maxMs: number, onExpire: (reason: 'idle' | 'max') => void) {
    this.#idleMs = idleMs;
    this.#maxMs = maxMs;
    this.#onExpire = onExpire;
    this.#started = this.#last = Date.now();
    this.#arm(Math.min(idleMs, maxMs));
  }

  get active(): boolean {
    return this.#timer !== undefined;
  }

  /** Activity: the idle limit starts over. */
  touch(): void {
    this.#last = Date.now();
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#check(), ms);
    // A pending request must not keep a stopping process alive.
    this.#timer.unref();
  }

  #check(): void {
    const now = Date.now();
    const hard = this.#started + this.#maxMs;
    const idle = this.#last + this.#idleMs;
    if (now < Math.min(hard, idle)) return this.#arm(Math.min(hard, idle) - now);
    this.#timer = undefined;
    this.#onExpire(now >= hard ? 'max' : 'idle');
  }
}
