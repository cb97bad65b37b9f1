import type { RedisClient } from '../redis.ts';
import { EndedSet, type SessionStore } from './store.ts';

const LIVE_CACHE_MAX = 50_000;
/**
 * Endings this replica remembers: a cache of Redis's deny-list, which answers for what it forgot
 * (a session it has not checked since is asked again), so a replica's memory does not grow with
 * every ending the cluster sees in a day.
 */
const ENDED_CACHE_MAX = 50_000;

/**
 * Deny-list in Redis (`<prefix>ended:<id>` with a TTL) plus a pub/sub channel so other replicas
 * learn of an ending without asking. A session this replica has already checked is answered from
 * memory; when the subscription drops, that memory is forgotten, since endings may have been missed.
 * If Redis is unreachable, sessions are treated as live: proxying goes on without the deny-list.
 */
export class RedisSessionStore implements SessionStore {
  readonly #redis: RedisClient;
  readonly #sub: RedisClient;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #ended: EndedSet;
  #live = new Set<string>();

  constructor(redis: RedisClient, subscriber: RedisClient, prefix: string, endedCacheMax = ENDED_CACHE_MAX) {
    this.#ended = new EndedSet(endedCacheMax);
    this.#redis = redis;
    this.#sub = subscriber;
    this.#prefix = prefix;
    this.#channel = `${prefix}session-ended`;
    this.#sub.on('message', (channel: string, message: string) => {
      if (channel !== this.#channel) return;
      const sep = message.indexOf(' ');
      if (sep < 0) return;
      const id = message.slice(sep + 1);
      this.#live.delete(id);
      this.#ended.add(id, Number(message.slice(0, sep)));
    });
    // A (re)subscription means endings may have gone unheard: re-check every session once.
    this.#sub.on('ready', () => {
      this.#live = new Set();
    });
    this.#sub.subscribe(this.#channel).catch(() => {
      // ioredis re-subscribes on reconnect by itself.
    });
  }

  async isEnded(id: string): Promise<boolean> {
    if (this.#ended.has(id)) return true;
    if (this.#live.has(id)) return false;
    try {
      const ttl = await this.#redis.pttl(this.#prefix + 'ended:' + id);
      if (ttl > 0 || ttl === -1) {
        this.#ended.add(id, Date.now() + (ttl > 0 ? ttl : 3_600_000));
        return true;
      }
      this.#knownLive(id);
      return false;
    } catch {
      return false;
    }
  }

  /** Known live from the start: a session's first request asks Redis nothing (one round trip less per session). */
  started(id: string): void {
    this.#knownLive(id);
  }

  /** Live as far as this replica knows, until an ending is heard over pub/sub (or the subscription drops). */
  #knownLive(id: string): void {
    if (this.#live.size >= LIVE_CACHE_MAX) this.#live = new Set();
    this.#live.add(id);
  }

  async end(id: string, ttlMs: number): Promise<void> {
    const until = Date.now() + ttlMs;
    this.#live.delete(id);
    this.#ended.add(id, until);
    try {
      // One script, not MULTI … EXEC: as atomic, and ioredis's transaction pipeline cost ≈ 20 KB
      // allocated per ending, ≈ 6 KB of it promoted to the old generation (docs/performance.md,
      // "a session's start and end").
      await this.#redis.eval(END_SESSION, 1, this.#prefix + 'ended:' + id, Math.max(1, Math.ceil(ttlMs)), this.#channel, `${until} ${id}`);
    } catch {
      // Recorded locally; other replicas see it when the upstream answers 404.
    }
  }

  healthy(): boolean {
    return this.#redis.status === 'ready';
  }

  async close(): Promise<void> {}
}

/** Records an ending (KEYS[1] for ARGV[1] ms) and tells every replica of it (ARGV[3] on channel ARGV[2]). */
const END_SESSION = "redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) return redis.call('PUBLISH', ARGV[2], ARGV[3])";
