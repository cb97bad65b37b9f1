import type { RedisClient } from '../redis.ts';

/**
 * legacy: where a 2024-11-05 session's upstream lives. Such a client learns its message URL —
 * with the sealed session id in it — before it initializes, so the upstream placement that
 * `initialize` decides cannot be in that id: it is kept here, sealed, for the session's lifetime.
 * A placement never changes once written, so each replica asks the store once per session.
 */
export interface RouteStore {
  /**
   * Takes the session's one initialize, atomically across replicas: false when another one was
   * taken already (initialized, or initializing now). Held until put() or release().
   */
  claim(id: string, ttlMs: number): Promise<boolean>;
  /** Gives back a claim whose initialize did not place the session (it may initialize again). */
  release(id: string): Promise<void>;
  put(id: string, sealed: string, ttlMs: number): Promise<void>;
  /** The sealed placement, or undefined when the session has not initialized (or the store is down). */
  get(id: string): Promise<string | undefined>;
}

/** What a claimed route holds until its placement is known (no sealed token looks like it). */
const CLAIMED = '~initializing';

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

  delete(id: string): void {
    this.#routes.delete(id);
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

  async claim(id: string, ttlMs: number): Promise<boolean> {
    if (this.#cache.get(id) !== undefined) return false;
    this.#cache.set(id, CLAIMED, ttlMs);
    return true;
  }

  async release(id: string): Promise<void> {
    if (this.#cache.get(id) === CLAIMED) this.#cache.delete(id);
  }

  async put(id: string, sealed: string, ttlMs: number): Promise<void> {
    this.#cache.set(id, sealed, ttlMs);
  }

  async get(id: string): Promise<string | undefined> {
    const sealed = this.#cache.get(id);
    return sealed === CLAIMED ? undefined : sealed;
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

  async claim(id: string, ttlMs: number): Promise<boolean> {
    return (await this.#redis.set(`${this.#prefix}route:${id}`, CLAIMED, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX')) === 'OK';
  }

  async release(id: string): Promise<void> {
    await this.#redis.eval(RELEASE_CLAIM, 1, `${this.#prefix}route:${id}`, CLAIMED);
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
      if (!sealed || sealed === CLAIMED) return undefined;
      if (ttl > 0) this.#cache.set(id, sealed, ttl);
      return sealed;
    } catch {
      return undefined;
    }
  }
}

/** Deletes a route only while it is still a claim (a placement written meanwhile stays). */
const RELEASE_CLAIM = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
