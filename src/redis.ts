import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RedisConfig } from './config/types.ts';

/** A standalone/Sentinel connection or a Cluster: the gateway uses only commands both offer. */
export type RedisClient = Redis | Cluster;

/**
 * Redis connections for the gateway. Commands fail fast while disconnected (no offline queue),
 * so a Redis outage degrades features instead of stalling requests; ioredis reconnects by itself
 * (and follows Sentinel failovers and Cluster redirections).
 */
export function connectRedis(cfg: RedisConfig, extra: RedisOptions = {}): RedisClient {
  const base: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    ...(cfg.password !== undefined ? { password: cfg.password } : {}),
    ...(cfg.db !== undefined ? { db: cfg.db } : {}),
    ...extra,
  };
  if (cfg.cluster) {
    const options: ClusterOptions = {
      enableOfflineQueue: base.enableOfflineQueue ?? false,
      redisOptions: base,
      clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
    };
    return new Cluster(cfg.cluster.map((n) => ({ host: n.host, port: n.port })), options);
  }
  if (cfg.sentinels) {
    return new Redis({
      ...base,
      sentinels: cfg.sentinels.map((n) => ({ host: n.host, port: n.port })),
      name: cfg.name!,
      // Learn of a failover from the sentinels at once, and leave a demoted master that answers READONLY.
      failoverDetector: true,
      reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
    });
  }
  return new Redis(cfg.url!, base);
}
