import type { RedisClient } from '../redis.ts';

/**
 * legacy: where a 2024-11-05 session's upstream lives. Such a client learns its message URL —
 * with the sealed session id in it — before it initializes, so the upstream placement that
 * `initialize` decides cannot be in that id: it is kept here, sealed, for the session's lifetime.
 * A placement never changes once written, so each replica asks the store once per session.
 */
export interface RouteStore {
  put(id: string, sealed: string, ttlMs: number): Promise<void>;
  /** The sealed placement, or undefined when the session has not initialized (or the store is down). */
  get(id: string): Promise<string | undefined>;
}

const CACHE_MAX = 10_000;

/** Known routes of this process, bounded; shared by both stores. */
class RouteCache {
  readonly #routes = new Map<string, { sealed: string; until: number }>();

  get(id: string): string | undefined {
    const hit = this.#routes.get(id);
    if (hit && hit.until > Date.now()) return hit.sealed;
    if (hit) this.#routes.delete(id);
    return undefined;
  }

  set(id: string, sealed: string, ttlMs: number): void {
    if (this.#routes.size >= CACHE_MAX) {
      const now = Date.now();
      for (const [k, v] of this.#routes) if (v.until <= now) this.#routes.delete(k);
      if (this.#routes.size >= CACHE_MAX) this.#routes.delete(this.#routes.keys().next().value!);
    }
    this.#routes.set(id, { sealed, until: Date.now() + ttlMs });
  }
}

export class MemoryRouteStore implements RouteStore {
  readonly #cache = new RouteCache();

  async put(id: string, sealed: string, ttlMs: number): Promise<void> {
    this.#cache.set(id, sealed, ttlMs);
  }

  async get(id: string): Promise<string | undefined> {
    return this.#cache.get(id);
  }
}

export class RedisRouteStore implements RouteStore {
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #cache = new RouteCache();

  constructor(redis: RedisClient, prefix: string) {
    this.#redis = redis;
    this.#prefix = prefix;
  }

  async put(id: string, sealed: string, ttlMs: number): Promise<void> {
    this.#cache.set(id, sealed, ttlMs);
    await this.#redis.set(`${this.#prefix}route:${id}`, sealed, 'PX', Math.max(1, Math.ceil(ttlMs)));
  }

  async get(id: string): Promise<string | undefined> {
    const known = this.#cache.get(id);
    if (known) return known;
    const key = `${this.#prefix}route:${id}`;
    try {
      const [sealed, ttl] = await Promise.all([this.#redis.get(key), this.#redis.pttl(key)]);
      if (sealed && ttl > 0) this.#cache.set(id, sealed, ttl);
      return sealed ?? undefined;
    } catch {
      return undefined;
    }
  }
}
