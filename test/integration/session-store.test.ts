import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { RedisSessionStore } from '../../src/session/redis-store.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';

/**
 * A replica's memory of ended sessions is a cache of Redis's deny-list, bounded: what it forgot
 * Redis still answers for (issue I: memory flat however many sessions end in a day).
 */
describe('RedisSessionStore: ended sessions past its memory', () => {
  let redis: RedisServer;
  const clients: Redis[] = [];
  const client = () => {
    const c = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    clients.push(c);
    return c;
  };
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await redis?.stop();
  });

  it('an ending it no longer remembers is still an ending: Redis is asked again', async () => {
    const store = new RedisSessionStore(client(), client(), 'cap-test:', 2);
    // Seen live first: the id is in the replica's live cache when it ends.
    for (const id of ['a', 'b', 'c']) assert.equal(await store.isEnded(id), false);
    for (const id of ['a', 'b', 'c']) await store.end(id, 60_000);
    // The replica remembers two endings; `a` was forgotten first.
    for (const id of ['a', 'b', 'c']) assert.equal(await store.isEnded(id), true, id);
    assert.equal(await store.isEnded('d'), false);
    await store.close();
  });

  it('a session this replica started is not looked up in Redis, and it still hears of its ending elsewhere', async () => {
    const one = new RedisSessionStore(client(), client(), 'started-test:');
    const two = new RedisSessionStore(client(), client(), 'started-test:');
    await sleep(100); // both subscribed
    const probe = client();
    const pttls = async () => Number(/cmdstat_pttl:calls=(\d+)/.exec(await probe.info('commandstats'))?.[1] ?? 0);
    const before = await pttls();
    one.started('s1');
    assert.equal(await one.isEnded('s1'), false);
    assert.equal(await pttls(), before, 'no round trip for a session it started');
    await two.end('s1', 60_000);
    await sleep(100);
    assert.equal(await one.isEnded('s1'), true, 'ended on the other replica');
    await one.close();
    await two.close();
  });

  it('another replica learns endings over pub/sub past its cap too', async () => {
    const one = new RedisSessionStore(client(), client(), 'cap-test2:', 2);
    const two = new RedisSessionStore(client(), client(), 'cap-test2:', 2);
    await sleep(100); // both subscribed
    for (const id of ['x', 'y', 'z']) assert.equal(await two.isEnded(id), false);
    for (const id of ['x', 'y', 'z']) await one.end(id, 60_000);
    await sleep(100);
    for (const id of ['x', 'y', 'z']) assert.equal(await two.isEnded(id), true, id);
    await one.close();
    await two.close();
  });
});
