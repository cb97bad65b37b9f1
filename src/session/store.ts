/**
 * Where ended sessions are remembered so every replica answers 404 for them. Checks are answered
 * from memory whenever possible: the Redis implementation asks Redis once per session per
 * replica and learns of later endings over pub/sub.
 */
export interface SessionStore {
  /** True when the session was ended (DELETE, expiry, upstream loss). Never throws. */
  isEnded(id: string): Promise<boolean>;
  /**
   * A session this replica has just created: no ending of it can exist yet (its id is new), so
   * none need be looked up for it; a later ending reaches this replica as any other does.
   */
  started(id: string): void;
  /** Records the end for `ttlMs` (after that the token has expired anyway). Never throws. */
  end(id: string, ttlMs: number): Promise<void>;
  /** False while the backing store is unreachable (readiness reports it). */
  healthy(): boolean;
  close(): Promise<void>;
}

/** Ended ids a replica remembers at most: ~100 bytes each. */
const MAX_ENDED = 1_000_000;

/**
 * Ended ids with their expiry; bounded by lifetime, pruned as it grows, and by count: an ending
 * is remembered up to `session.maxLifetime` (24 h), and a caller that opens and DELETEs sessions
 * in a loop (each ending also told to every replica) would otherwise grow it for a day. Past
 * `max` the oldest ending is forgotten: Redis still holds it (RedisSessionStore asks it again),
 * and without Redis the session's upstream has ended it too (DELETE, a dead child: 404 again).
 */
export class EndedSet {
  readonly #ended = new Map<string, number>();
  readonly #max: number;
  #nextPrune = 0;

  constructor(max = MAX_ENDED) {
    this.#max = max;
  }

  has(id: string, now = Date.now()): boolean {
    const until = this.#ended.get(id);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#ended.delete(id);
    return false;
  }

  add(id: string, until: number, now = Date.now()): void {
    this.#ended.set(id, until);
    if (now >= this.#nextPrune) {
      this.#nextPrune = now + 60_000;
      for (const [k, t] of this.#ended) if (t <= now) this.#ended.delete(k);
    }
    // Insertion order: the first key is the oldest ending.
    if (this.#ended.size > this.#max) this.#ended.delete(this.#ended.keys().next().value!);
  }

  get size(): number {
    return this.#ended.size;
  }
}

export class MemorySessionStore implements SessionStore {
  readonly #ended = new EndedSet();

  async isEnded(id: string): Promise<boolean> {
    return this.#ended.has(id);
  }

  started(): void {}

  async end(id: string, ttlMs: number): Promise<void> {
    this.#ended.add(id, Date.now() + ttlMs);
  }

  healthy(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}
