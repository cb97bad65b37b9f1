import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisCacheStore } from '../../src/cache/redis-store.ts';
import { ResultCache, type CacheQuery } from '../../src/cache/result-cache.ts';
import { MemoryCacheStore, type CacheStore } from '../../src/cache/store.ts';
import { MemoryRateLimiter, type RateLimiter } from '../../src/resilience/limiter.ts';
import { RedisRateLimiter } from '../../src/resilience/redis-limiter.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';

/**
 * One suite per seam, run against both implementations: the in-memory one (one replica) and the
 * Redis one (shared), on a real redis-server.
 */
let redis: RedisServer;
let client: Redis;
before(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { lazyConnect: true });
  await client.connect();
});
after(async () => {
  client?.disconnect();
  await redis?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const query = (over: Partial<CacheQuery> = {}): CacheQuery => ({
  server: 'api',
  method: 'resources/read',
  params: { uri: 'res://a' },
  protocolVersion: '2025-11-25',
  context: 'alice',
  perUser: false,
  ...over,
});

const stores: [string, () => CacheStore][] = [
  ['memory', () => new MemoryCacheStore(1_000, 1024 * 1024)],
  ['redis', () => new RedisCacheStore(client)],
];

for (const [name, make] of stores) {
  describe(`cache store (${name})`, () => {
    it('reads several keys in order, absent ones as undefined, and expires them', async () => {
      const store = make();
      const p = `t:${name}:${Math.random()}:`;
      await store.set([[`${p}a`, '1'], [`${p}b`, '2']], 500);
      assert.deepEqual(await store.get([`${p}b`, `${p}x`, `${p}a`]), ['2', undefined, '1']);
      await sleep(600);
      assert.deepEqual(await store.get([`${p}a`, `${p}b`]), [undefined, undefined]);
    });

    it('result cache: hit after store; a bump of the server, the list or the URI makes it a miss', async () => {
      const cache = new ResultCache(make(), `t:${name}:${Math.random()}:`);
      const first = await cache.lookup(query());
      assert.equal(first.hit, undefined);
      await cache.store(first, '{"contents":[]}', 'public', 10_000);
      assert.equal((await cache.lookup(query())).hit, '{"contents":[]}');
      assert.equal((await cache.lookup(query({ context: 'bob' }))).hit, '{"contents":[]}', 'public: anyone');
      await cache.invalidate('api', { uri: 'res://other' });
      assert.equal((await cache.lookup(query())).hit, '{"contents":[]}', 'another URI');
      await cache.invalidate('api', 'tools');
      assert.equal((await cache.lookup(query())).hit, '{"contents":[]}', 'another list');
      await cache.invalidate('api', { uri: 'res://a' });
      assert.equal((await cache.lookup(query())).hit, undefined);

      const list = await cache.lookup(query({ method: 'tools/list', params: undefined }));
      await cache.store(list, '{"tools":[]}', 'public', 10_000);
      assert.equal((await cache.lookup(query({ method: 'tools/list', params: {} }))).hit, '{"tools":[]}', 'no params = empty params');
      await cache.invalidate('api', 'all');
      assert.equal((await cache.lookup(query({ method: 'tools/list', params: undefined }))).hit, undefined);
    });

    it('result cache: a fetch that raced an invalidation is stored where no one looks', async () => {
      const cache = new ResultCache(make(), `t:${name}:${Math.random()}:`);
      const before = await cache.lookup(query());
      await cache.invalidate('api', 'all');
      await cache.store(before, '"stale"', 'public', 10_000);
      assert.equal((await cache.lookup(query())).hit, undefined);
    });

    it('result cache: a private result is served to its own context only; perUser keys every result', async () => {
      const cache = new ResultCache(make(), `t:${name}:${Math.random()}:`);
      const alice = await cache.lookup(query());
      await cache.store(alice, '"mine"', 'private', 10_000);
      assert.equal((await cache.lookup(query())).hit, '"mine"');
      assert.equal((await cache.lookup(query({ context: 'bob' }))).hit, undefined);
      const bob = await cache.lookup(query({ context: 'bob' }));
      await cache.store(bob, '"his"', 'private', 10_000);
      assert.equal((await cache.lookup(query())).hit, '"mine"');
      assert.equal((await cache.lookup(query({ context: 'bob' }))).hit, '"his"');

      const perUser = await cache.lookup(query({ perUser: true, params: { uri: 'res://p' } }));
      await cache.store(perUser, '"public but per user"', 'public', 10_000);
      assert.equal((await cache.lookup(query({ perUser: true, params: { uri: 'res://p' } }))).hit, '"public but per user"');
      assert.equal((await cache.lookup(query({ perUser: true, context: 'bob', params: { uri: 'res://p' } }))).hit, undefined);
    });
  });
}

const limiters: [string, () => RateLimiter][] = [
  ['memory', () => new MemoryRateLimiter()],
  ['redis', () => new RedisRateLimiter(client, new MemoryRateLimiter(), (err) => assert.fail(err))],
];

for (const [name, make] of limiters) {
  describe(`rate limiter (${name})`, () => {
    it('lets a whole window through at once, then one per period/N, and says when', async () => {
      const limiter = make();
      const rule = { requests: 3, periodMs: 1_500 };
      const check = { key: `rl:${name}:${Math.random()}`, rule, cost: 1, scope: 'principal' as const };
      for (let i = 0; i < 3; i++) assert.deepEqual(await limiter.take([check]), { ok: true });
      const refused = await limiter.take([check]);
      assert.equal(refused.ok, false);
      assert.ok(!refused.ok && refused.retryAfterMs > 0 && refused.retryAfterMs <= 500, JSON.stringify(refused));
      await sleep(520);
      assert.deepEqual(await limiter.take([check]), { ok: true }, 'one more after period/N');
      assert.equal((await limiter.take([check])).ok, false);
    });

    it('charges all limits of a request or none, and names the one that refused', async () => {
      const limiter = make();
      const tag = `rl:${name}:${Math.random()}`;
      const wide = { key: `${tag}:s`, rule: { requests: 100, periodMs: 60_000 }, cost: 1, scope: 'server' as const };
      const narrow = { key: `${tag}:t`, rule: { requests: 1, periodMs: 60_000 }, cost: 1, scope: 'tool' as const };
      assert.equal((await limiter.take([wide, narrow])).ok, true);
      const refused = await limiter.take([wide, narrow]);
      assert.equal(!refused.ok && refused.scope, 'tool');
      // The refused request did not use up the server's limit: 99 more fit, then no more.
      for (let i = 0; i < 99; i++) assert.equal((await limiter.take([wide])).ok, true, `request ${i}`);
      assert.equal((await limiter.take([wide])).ok, false);
      assert.equal((await limiter.take([{ ...wide, key: `${tag}:other`, cost: 5 }])).ok, true, 'cost counts several requests');
    });
  });
}

it('rate limiter (redis) stands in with the memory one while Redis fails', async () => {
  const broken = new Redis({ port: 1, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  const errors: string[] = [];
  const limiter = new RedisRateLimiter(broken, new MemoryRateLimiter(), (err) => errors.push(err.message));
  const check = { key: 'x', rule: { requests: 1, periodMs: 60_000 }, cost: 1, scope: 'server' as const };
  assert.equal((await limiter.take([check])).ok, true);
  assert.equal((await limiter.take([check])).ok, false, 'the fallback limits');
  assert.equal(errors.length, 2);
  broken.disconnect();
});
