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
 * One replica's store, bounded by entry count and by the text it holds. When full it drops what
 * expired; if that is not enough it drops everything — evicting single keys could drop a version
 * key while entries written under its previous value live on (see result-cache.ts), and an empty
 * cache is always correct. The text bound matters: callers choose what is read and listed (a
 * list's params are part of its key), and `maxEntries` results of up to `cache.maxEntryBytes`
 * each are gigabytes.
 */
export class MemoryCacheStore implements CacheStore {
  readonly #entries = new Map<string, { value: string; until: number }>();
  readonly #maxEntries: number;
  readonly #maxChars: number;
  /** Characters of the keys and values held. */
  #chars = 0;

  constructor(maxEntries: number, maxChars: number) {
    this.#maxEntries = maxEntries;
    this.#maxChars = maxChars;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Characters of the keys and values held (tests, diagnostics). */
  get chars(): number {
    return this.#chars;
  }

  async get(keys: readonly string[]): Promise<(string | undefined)[]> {
    const now = Date.now();
    return keys.map((k) => {
      const e = this.#entries.get(k);
      if (!e) return undefined;
      if (e.until > now) return e.value;
      this.#delete(k, e.value);
      return undefined;
    });
  }

  async set(entries: readonly (readonly [string, string])[], ttlMs: number): Promise<void> {
    const now = Date.now();
    let adding = 0;
    for (const [k, value] of entries) adding += k.length + value.length;
    if (this.#entries.size + entries.length > this.#maxEntries || this.#chars + adding > this.#maxChars) {
      for (const [k, e] of this.#entries) if (e.until <= now) this.#delete(k, e.value);
      if (this.#entries.size + entries.length > this.#maxEntries || this.#chars + adding > this.#maxChars) {
        this.#entries.clear();
        this.#chars = 0;
      }
    }
    if (adding > this.#maxChars) return;
    for (const [k, value] of entries) {
      const old = this.#entries.get(k);
      if (old) this.#chars -= k.length + old.value.length;
      this.#entries.set(k, { value, until: now + ttlMs });
      this.#chars += k.length + value.length;
    }
  }

  #delete(k: string, value: string): void {
    this.#entries.delete(k);
    this.#chars -= k.length + value.length;
  }
}
