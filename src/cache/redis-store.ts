import type { RedisClient } from '../redis.ts';
import type { CacheStore } from './store.ts';

/**
 * The shared store: MGET for reads and one pipeline of `SET … PX` for writes. The keys of one
 * call share a `{server}` hash tag (result-cache.ts), so both work on Redis Cluster too.
 */
export class RedisCacheStore implements CacheStore {
  readonly #redis: RedisClient;

  constructor(redis: RedisClient) {
    this.#redis = redis;
  }

  async get(keys: readonly string[]): Promise<(string | undefined)[]> {
    const values = await this.#redis.mget(...keys);
    return values.map((v) => v ?? undefined);
  }

  async set(entries: readonly (readonly [string, string])[], ttlMs: number): Promise<void> {
    const px = Math.max(1, Math.ceil(ttlMs));
    const pipeline = this.#redis.pipeline();
    for (const [k, v] of entries) pipeline.set(k, v, 'PX', px);
    const results = await pipeline.exec();
    const failed = results?.find(([err]) => err);
    if (failed) throw failed[0]!;
  }
}
