/**
 * Where cached results live: a key-value store with expiry and multi-key reads. The Redis one is
 * shared by every replica; the memory one serves a single replica. ResultCache (result-cache.ts)
 * builds versioned keys on top, so invalidation is a write of a new version, never a scan.
 */
export interface CacheStore {
  /** The values of `keys`, in order (undefined: absent or expired), in one round-trip. Throws if the store is down. */
  get(keys: readonly string[]): Promise<(string | undefined)[]>;
  /** Stores every pair for `ttlMs`, in one round-trip. Throws if the store is down. */
  set(entries: readonly (readonly [string, string])[], ttlMs: number): Promise<void>;
}

/**
 * One replica's store, bounded by entry count. When full it drops what expired; if that is not
 * enough it drops everything — evicting single keys could drop a version key while entries
 * written under its previous value live on (see result-cache.ts), and an empty cache is always
 * correct.
 */
export class MemoryCacheStore implements CacheStore {
  readonly #entries = new Map<string, { value: string; until: number }>();
  readonly #maxEntries: number;

  constructor(maxEntries: number) {
    this.#maxEntries = maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  async get(keys: readonly string[]): Promise<(string | undefined)[]> {
    const now = Date.now();
    return keys.map((k) => {
      const e = this.#entries.get(k);
      if (!e) return undefined;
      if (e.until > now) return e.value;
      this.#entries.delete(k);
      return undefined;
    });
  }

  async set(entries: readonly (readonly [string, string])[], ttlMs: number): Promise<void> {
    const now = Date.now();
    if (this.#entries.size + entries.length > this.#maxEntries) {
      for (const [k, e] of this.#entries) if (e.until <= now) this.#entries.delete(k);
      if (this.#entries.size + entries.length > this.#maxEntries) this.#entries.clear();
    }
    for (const [k, value] of entries) this.#entries.set(k, { value, until: now + ttlMs });
  }
}
