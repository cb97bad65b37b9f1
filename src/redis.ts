import { Redis, type RedisOptions } from 'ioredis';

/**
 * Redis connections for the gateway. Commands fail fast while disconnected (no offline queue),
 * so a Redis outage degrades features instead of stalling requests; ioredis reconnects by itself.
 */
export function connectRedis(url: string, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    lazyConnect: false,
    ...extra,
  });
}
