import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { EventLog, Follower, LoggedEvent } from '../../src/events/log.ts';
import { MemoryEventLog } from '../../src/events/memory-log.ts';
import { RedisEventLog } from '../../src/events/redis-log.ts';
import { RedisStreamReader } from '../../src/events/redis-reader.ts';
import type { EventSpan, EventTracer, TracedRequest } from '../../src/events/tracing.ts';
import { connectRedis, type RedisClient } from '../../src/redis.ts';
import { restartRedis, startCluster, startRedis, type RedisServer } from '../helpers/redis.ts';

const ev = (seq: number, data = `{"n":${seq}}`, extra: Partial<LoggedEvent> = {}): LoggedEvent => ({ seq, data, upstreamId: `u${seq}`, hidden: false, end: false, ...extra });
const info = { producer: 'node-a', kind: 'post' as const, requests: '[1]' };

/** One suite, both implementations: the EventLog contract. */
function contract(name: string, make: (opts: { ttlMs: number; maxLength: number }) => EventLog) {
  describe(`EventLog contract: ${name}`, () => {
    let log: EventLog;
    before(() => {
      log = make({ ttlMs: 60_000, maxLength: 100 });
    });
    after(async () => {
      await log.close();
    });

    it('appends in order and reads what follows a position', async () => {
      await log.append('s1:a', [ev(0, '', { hidden: true }), ev(1), ev(2)], info);
      await log.append('s1:a', [ev(3), ev(4, '', { end: true })]);
      assert.deepEqual((await log.read('s1:a', 0, 100)).map((e) => e.seq), [1, 2, 3, 4]);
      assert.deepEqual((await log.read('s1:a', 2, 1)).map((e) => e.seq), [3]);
      assert.deepEqual(await log.read('s1:a', 4, 100), []);
      const all = await log.read('s1:a', -1, 100);
      assert.deepEqual(all[0], ev(0, '', { hidden: true }));
      assert.deepEqual(all[4], ev(4, '', { end: true }));
      assert.deepEqual(await log.last('s1:a'), ev(4, '', { end: true }));
      assert.deepEqual(await log.info('s1:a'), info);
      assert.deepEqual(await log.open('s1:a', 2, 1), { info, events: [ev(3)] }, 'info and a page in one step');
      assert.deepEqual(await log.open('s1:nothing', 0, 10), { info: undefined, events: [] });
    });

    it('keeps streams apart, and unknown streams are empty', async () => {
      await log.append('s1:b', [ev(1, '{"other":true}')], { ...info, kind: 'get', requests: '' });
      assert.deepEqual((await log.read('s1:a', 0, 100)).map((e) => e.data).includes('{"other":true}'), false);
      assert.deepEqual(await log.read('s2:a', 0, 100), []);
      assert.equal(await log.info('s2:a'), undefined);
      assert.equal(await log.last('s2:a'), undefined);
    });

    it("keeps a stream's answer filter with its info, and none when it has none", async () => {
      const guarded = { ...info, guard: '{"lists":[["n7","tools"]],"masks":[]}' };
      await log.append('s1:g', [ev(1)], guarded);
      assert.deepEqual(await log.info('s1:g'), guarded);
      assert.equal('guard' in ((await log.info('s1:a')) ?? {}), false);
    });

    it('moves production only from the node that has it', async () => {
      assert.equal(await log.claim('s1:a', 'node-x', 'node-b'), false);
      assert.equal(await log.claim('s1:a', 'node-a', 'node-b'), true);
      assert.equal(await log.claim('s1:a', 'node-a', 'node-c'), false, 'only one takeover wins');
      assert.equal((await log.info('s1:a'))?.producer, 'node-b');
    });

    it('follows: waits for events appended later, times out empty', async () => {
      await log.append('s3:f', [ev(0, '', { hidden: true })], info);
      const follower = log.follower('s3:f');
      try {
        const started = Date.now();
        assert.deepEqual(await follower.next(0, 150), []);
        assert.ok(Date.now() - started >= 100, 'it waited');
        setTimeout(() => void log.append('s3:f', [ev(1), ev(2)]), 50);
        // Woken by the first new event; a batch may arrive in parts.
        const got = await follower.next(0, 2_000);
        assert.ok(got.length >= 1);
        while (got.length < 2) got.push(...(await follower.next(got.at(-1)!.seq, 2_000)));
        assert.deepEqual(got.map((e) => e.seq), [1, 2]);
      } finally {
        follower.close();
      }
    });

    it('follows a stream that does not exist yet: waits for its first event (it does not return early)', async () => {
      const follower = log.follower('s6:later');
      try {
        const started = Date.now();
        assert.deepEqual(await follower.next(0, 200), []);
        assert.ok(Date.now() - started >= 150, `it waited (${Date.now() - started} ms)`);
        const next = follower.next(0, 5_000);
        setTimeout(() => void log.append('s6:later', [ev(1)], info), 50);
        assert.deepEqual((await next).map((e) => e.seq), [1]);
      } finally {
        follower.close();
      }
    });

    it('close() ends a waiting next() at once', async () => {
      const follower = log.follower('s6:closed');
      const started = Date.now();
      const waiting = follower.next(0, 5_000);
      setTimeout(() => follower.close(), 50);
      assert.deepEqual(await waiting, []);
      const waited = Date.now() - started;
      assert.ok(waited >= 40 && waited < 2_000, `ended after ${waited} ms`);
    });

    it('many followers at once, of one stream and of many: each gets every event after its own position, in order', async () => {
      const keys = Array.from({ length: 40 }, (_, i) => `s7:${i}`);
      for (const key of keys) await log.append(key, [ev(0, '', { hidden: true })], info);
      // Two followers of s7:0, one behind the other.
      const followers = [...keys.map((key) => ({ key, from: 0, f: log.follower(key) })), { key: 's7:0', from: 3, f: log.follower('s7:0') }];
      try {
        const got = followers.map(() => [] as number[]);
        const reading = followers.map(async ({ f, from }, i) => {
          let at = from;
          while (at < 6) {
            const events = await f.next(at, 5_000);
            if (events.length === 0) break;
            got[i]!.push(...events.map((e) => e.seq));
            at = events.at(-1)!.seq;
          }
        });
        for (let seq = 1; seq <= 6; seq += 2) {
          await Promise.all(keys.map((key) => log.append(key, [ev(seq), ev(seq + 1)])));
          await sleep(20);
        }
        await Promise.all(reading);
        for (const [i, seqs] of got.entries()) assert.deepEqual(seqs, i === keys.length ? [4, 5, 6] : [1, 2, 3, 4, 5, 6], followers[i]!.key);
      } finally {
        for (const { f } of followers) f.close();
      }
    });

    it('trims to maxLength, oldest first', async () => {
      const events = Array.from({ length: 400 }, (_, i) => ev(i + 1));
      for (let i = 0; i < events.length; i += 50) await log.append('s4:t', events.slice(i, i + 50), info);
      const kept = await log.read('s4:t', 0, 1_000);
      assert.ok(kept.length >= 100 && kept.length < 400, `kept ${kept.length}`);
      assert.equal(kept.at(-1)!.seq, 400);
    });

    // legacy: several replicas append to one 2024-11-05 session stream; the log numbers the events.
    it('appendNext numbers after what the stream holds, atomically across appenders, each batch in order', async () => {
      const key = 's5:legacy';
      const msg = (data: string) => ({ data, upstreamId: '', hidden: false, end: false });
      assert.equal(await log.appendNext(key, [{ ...msg(''), hidden: true }], { producer: 'node-a', kind: 'get', requests: '' }), 1);
      const seqs = await Promise.all(Array.from({ length: 20 }, (_, i) => log.appendNext(key, [msg(`${i}.0`), msg(`${i}.1`)])));
      assert.equal(new Set(seqs).size, 20, 'every batch got numbers of its own');
      const events = await log.read(key, 0, 100);
      assert.deepEqual(events.map((e) => e.seq), Array.from({ length: 41 }, (_, i) => i + 1));
      for (let i = 0; i < 20; i++) assert.equal(events[events.findIndex((e) => e.data === `${i}.0`) + 1]!.data, `${i}.1`);
      assert.deepEqual(await log.info(key), { producer: 'node-a', kind: 'get', requests: '' });
      const follower = log.follower(key);
      try {
        const next = follower.next(41, 2_000);
        await log.appendNext(key, [msg('later')]);
        assert.deepEqual((await next).map((e) => [e.seq, e.data]), [[42, 'later']]);
      } finally {
        follower.close();
      }
    });

    it('tells live nodes from dead ones by heartbeat', async () => {
      await log.heartbeat('node-live', 200);
      assert.equal(await log.alive('node-live'), true);
      assert.equal(await log.alive('node-never'), false);
      await sleep(300);
      assert.equal(await log.alive('node-live'), false);
    });
  });
}

contract('memory', (o) => new MemoryEventLog(o));

let redis: RedisServer;
const clients: RedisClient[] = [];
before(async () => {
  redis = await startRedis();
});
after(async () => {
  for (const c of clients) c.disconnect();
  await redis?.stop();
});
contract('redis', (o) => {
  const client = connectRedis({ url: redis.url, keyPrefix: 't:', sentinels: undefined, name: undefined, cluster: undefined, password: undefined, db: undefined }, { enableOfflineQueue: true });
  clients.push(client);
  return new RedisEventLog(client, { prefix: 't:', replicaAcks: 0, replicaAckTimeoutMs: 100, ...o });
});

describe('EventLog retention (redis)', () => {
  it('expires a stream ttl after its last event', async () => {
    const client = connectRedis({ url: redis.url, keyPrefix: 't:', sentinels: undefined, name: undefined, cluster: undefined, password: undefined, db: undefined }, { enableOfflineQueue: true });
    clients.push(client);
    const log = new RedisEventLog(client, { prefix: 't:', replicaAcks: 0, replicaAckTimeoutMs: 100, ttlMs: 150, maxLength: 100 });
    await log.append('s9:x', [ev(1)], info);
    assert.equal((await log.read('s9:x', 0, 10)).length, 1);
    await sleep(300);
    assert.deepEqual(await log.read('s9:x', 0, 10), []);
    assert.equal(await log.info('s9:x'), undefined);
  });

  it('refreshes the expiry once per second of a stream (its first batch and its end always), never letting it lapse early', async () => {
    const client = connectRedis({ url: redis.url, keyPrefix: 't:', sentinels: undefined, name: undefined, cluster: undefined, password: undefined, db: undefined }, { enableOfflineQueue: true });
    clients.push(client);
    const log = new RedisEventLog(client, { prefix: 't:', replicaAcks: 0, replicaAckTimeoutMs: 100, ttlMs: 10_000, maxLength: 100 });
    const keys = ['t:ev:{s10}:x', 't:evm:{s10}:x'];
    const ttls = () => Promise.all(keys.map((k) => client.pttl(k)));
    await log.append('s10:x', [ev(1)], info);
    for (const t of await ttls()) assert.ok(t > 9_000, `first batch sets the ttl (${t} ms)`);
    // Mark the keys, then append within the window: the expiry is left as it was.
    for (const k of keys) await client.pexpire(k, 9_500);
    await log.append('s10:x', [ev(2)]);
    for (const t of await ttls()) assert.ok(t <= 9_500 && t > 9_000, `no refresh within a second of the last (${t} ms)`);
    await sleep(1_050);
    await log.append('s10:x', [ev(3)]);
    for (const t of await ttls()) assert.ok(t > 9_500, `refreshed once the second has passed (${t} ms)`);
    // The end (with its own retention) is never skipped, however soon it comes.
    await log.append('s10:x', [ev(4, '', { end: true })], undefined, 3_000);
    for (const t of await ttls()) assert.ok(t <= 3_000 && t > 2_000, `the end sets its own ttl (${t} ms)`);
    assert.deepEqual((await log.read('s10:x', 0, 10)).map((e) => e.seq), [1, 2, 3, 4]);
  });
});

describe('Redis appends of one turn share one pipeline', () => {
  it('appends of 20 streams made in one turn go in one pipeline; one that Redis refuses fails alone, the others land in order', async () => {
    const client = connectRedis({ url: redis.url, keyPrefix: 't:', sentinels: undefined, name: undefined, cluster: undefined, password: undefined, db: undefined }, { enableOfflineQueue: true });
    clients.push(client);
    const log = new RedisEventLog(client, { prefix: 't:', replicaAcks: 0, replicaAckTimeoutMs: 100, ttlMs: 60_000, maxLength: 100 });
    // Counts the pipelines the log opens on the real connection.
    let pipelines = 0;
    const pipeline = client.pipeline.bind(client);
    client.pipeline = ((...args: Parameters<typeof pipeline>) => {
      pipelines++;
      return pipeline(...args);
    }) as typeof client.pipeline;
    const keys = Array.from({ length: 20 }, (_, i) => `p1:${i}`);
    await Promise.all(keys.map((key) => log.append(key, [ev(0, '', { hidden: true }), ev(1)], info)));
    assert.equal(pipelines, 1, 'one pipeline for the whole turn');
    // Stream 7 repeats seq 1: Redis refuses an entry id not above the last one.
    const results = await Promise.allSettled(keys.map((key, i) => log.append(key, i === 7 ? [ev(1)] : [ev(2), ev(3)])));
    assert.equal(pipelines, 2);
    assert.deepEqual(results.map((r) => r.status === 'rejected'), keys.map((_, i) => i === 7));
    assert.match(String((results[7] as PromiseRejectedResult).reason), /XADD/);
    for (const [i, key] of keys.entries()) assert.deepEqual((await log.read(key, 0, 10)).map((e) => e.seq), i === 7 ? [1] : [1, 2, 3], key);
  });
});

describe('traces: the Redis appends of one turn are one span', () => {
  it('a child of the first traced request it writes for, linking the others; untraced appends make none; a refused command marks it failed', async () => {
    const client = connectRedis({ url: redis.url, keyPrefix: 't:', sentinels: undefined, name: undefined, cluster: undefined, password: undefined, db: undefined }, { enableOfflineQueue: true });
    clients.push(client);
    // What tracing is told (src/ops/tracing.ts implements it; the spans themselves: traces.test.ts).
    const told: { requests: readonly TracedRequest[]; events: number; streams: number; set: Record<string, unknown>; ended?: string | null }[] = [];
    let outside = 0;
    const tracer: EventTracer = {
      current: () => undefined,
      replay: () => undefined,
      outside: (fn) => (outside++, fn()),
      logWrite: (requests, events, streams) => {
        const span = { requests, events, streams, set: {} as Record<string, unknown>, ended: undefined as string | null | undefined };
        told.push(span);
        return { set: (k, v) => void (span.set[k] = v), end: (error) => void (span.ended = error ?? null) } satisfies EventSpan;
      },
    };
    const log = new RedisEventLog(client, { prefix: 't:', replicaAcks: 0, replicaAckTimeoutMs: 100, ttlMs: 60_000, maxLength: 100, tracer });
    const one: TracedRequest = { traced: true };
    const two: TracedRequest = { traced: true };
    await Promise.all([log.append('tr:a', [ev(0, '', { hidden: true }), ev(1)], info, undefined, one), log.append('tr:b', [ev(0, '', { hidden: true })], info, undefined, two), log.append('tr:c', [ev(0, '', { hidden: true })], info, undefined, one), log.append('tr:d', [ev(0, '', { hidden: true })], info)]);
    assert.equal(told.length, 1, 'one span for the pipeline');
    assert.deepEqual(told[0]!.requests, [one, two], 'each request once, the first first');
    assert.equal(told[0]!.events, 5);
    assert.equal(told[0]!.streams, 4);
    // Per stream: HSET of its info, an XADD per event, PEXPIRE of both keys (a first batch).
    assert.equal(told[0]!.set['db.operation.batch.size'], 4 + 5 + 8);
    assert.equal(told[0]!.ended, null, 'ended, without an error');
    assert.equal(outside, 1, 'its commands are sent outside any request');
    await log.append('tr:d', [ev(1)]);
    assert.equal(told.length, 1, 'no span for appends of no traced request');
    // Seq 1 again: Redis refuses it.
    await assert.rejects(log.append('tr:a', [ev(1)], undefined, undefined, one));
    assert.equal(told[1]!.ended, 'redis_error');
  });
});

/**
 * The Redis log's followers: one reader, one connection, for every stream a process follows
 * (src/events/redis-reader.ts). Each case has a redis-server of its own, so the connections
 * counted and killed are the reader's.
 */
describe('Redis followers share one reader', () => {
  const config = (url: string) => ({ url, keyPrefix: 't:', sentinels: undefined, name: undefined, cluster: undefined, password: undefined, db: undefined });
  const stream = (key: string) => `t:ev:{${key.slice(0, key.indexOf(':'))}}:${key.slice(key.indexOf(':') + 1)}`;
  let server: RedisServer | undefined;
  let admin: RedisClient | undefined;
  let client: RedisClient | undefined;
  let log: EventLog | undefined;
  let reader: RedisStreamReader | undefined;
  const start = async () => {
    server = await startRedis();
    admin = connectRedis(config(server.url), { enableOfflineQueue: true });
    client = connectRedis(config(server.url), { enableOfflineQueue: true });
    // Both see the restart below.
    for (const c of [admin, client]) c.on('error', () => {});
    log = new RedisEventLog(client, { prefix: 't:', replicaAcks: 0, replicaAckTimeoutMs: 100, ttlMs: 60_000, maxLength: 1_000 });
    return { server, admin, client, log };
  };
  afterEach(async () => {
    reader?.close();
    await log?.close();
    admin?.disconnect();
    client?.disconnect();
    await server?.stop();
    reader = log = admin = client = server = undefined;
  });
  const others = async (admin: RedisClient) => {
    const me = String(await admin.client('ID'));
    return ((await admin.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string).split('\n').filter((l) => l.startsWith('id=') && !l.startsWith(`id=${me} `));
  };
  /** Reads a follower until `last`, or until a read comes back empty. */
  const readUntil = async (f: Follower, from: number, last: number, blockMs = 5_000) => {
    const seqs: number[] = [];
    for (let at = from; at < last; ) {
      const events = await f.next(at, blockMs);
      if (events.length === 0) break;
      seqs.push(...events.map((e) => e.seq));
      at = events.at(-1)!.seq;
    }
    return seqs;
  };

  it('50 followers cost one connection, and a follower added while the read is blocked is read at once', async () => {
    const { admin, log } = await start();
    const before = (await others(admin)).length;
    const first = log.follower('r1:0');
    const waiting = first.next(0, 30_000);
    await sleep(100); // the reader blocks (for 2 s) on r1:0
    const withOne = (await others(admin)).length;
    assert.equal(withOne, before + 1, 'the reader has a connection of its own');
    const followers = Array.from({ length: 50 }, (_, i) => log.follower(`r1:${i + 1}`));
    try {
      const reads = followers.map((f) => f.next(0, 30_000));
      await sleep(50);
      const started = Date.now();
      await log.append('r1:50', [ev(1)], info);
      assert.deepEqual((await reads.at(-1)!).map((e) => e.seq), [1]);
      assert.ok(Date.now() - started < 1_000, `a new follower was read at once (${Date.now() - started} ms), not after the blocked read's 2 s`);
      assert.equal((await others(admin)).length, withOne, '51 followers, one connection');
      await Promise.all(Array.from({ length: 50 }, (_, i) => log.append(`r1:${i}`, [ev(1), ev(2)], info)));
      // A batch may arrive in parts.
      const rest = async (f: Follower, read: Promise<LoggedEvent[]>) => {
        const got = (await read).map((e) => e.seq);
        return got.at(-1) === 2 ? got : [...got, ...(await readUntil(f, got.at(-1) ?? 0, 2))];
      };
      assert.deepEqual(await rest(first, waiting), [1, 2]);
      for (const [i, read] of reads.slice(0, -1).entries()) assert.deepEqual(await rest(followers[i]!, read), [1, 2], `r1:${i + 1}`);
    } finally {
      first.close();
      for (const f of followers) f.close();
    }
  });

  it('more streams than one XREAD may name are read in commands of at most maxKeys; a closed follower is read no more', async () => {
    const { admin, client } = await start();
    reader = new RedisStreamReader(client, { blockMs: 2_000, pollMs: 50, maxKeys: 4, count: 100, wakeKey: 't:wake:test' });
    const commands: string[][] = [];
    const monitor = await (admin as Redis).monitor();
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'xread') commands.push(args);
    });
    try {
      const keys = Array.from({ length: 10 }, (_, i) => `r2:${i}`);
      const followers = keys.map((key) => reader!.follow(stream(key)));
      const reads = followers.map((f) => readUntil(f, 0, 6));
      for (let seq = 1; seq <= 6; seq += 3) {
        await Promise.all(keys.map((key) => client.xadd(stream(key), `1-${seq}`, 'd', `${seq}`).then(() => client.xadd(stream(key), `1-${seq + 1}`, 'd', '').then(() => client.xadd(stream(key), `1-${seq + 2}`, 'd', '')))));
        await sleep(30);
      }
      for (const [i, read] of reads.entries()) assert.deepEqual(await read, [1, 2, 3, 4, 5, 6], keys[i]);
      assert.ok(commands.length > 0);
      for (const args of commands) {
        const named = (args.length - args.findIndex((a) => a.toLowerCase() === 'streams') - 1) / 2;
        assert.ok(named <= 4, `an XREAD named ${named} streams`);
      }
      // Only one left: one command blocks on it (and the wake-up key) again.
      for (const f of followers.slice(1)) f.close();
      const last = followers[0]!.next(6, 5_000);
      await sleep(200);
      commands.length = 0;
      await client.xadd(stream(keys[0]!), '1-7', 'd', '7');
      assert.deepEqual((await last).map((e) => e.seq), [7]);
      await sleep(100);
      const later = commands.flat().join(' ');
      for (const key of keys.slice(1)) assert.ok(!later.includes(stream(key)), `${key} is read no more`);
      followers[0]!.close();
    } finally {
      monitor.disconnect();
    }
  });

  it("the reader's connection killed, or Redis restarted: each follower goes on from its position, nothing lost or repeated", async () => {
    const { admin, log } = await start();
    const f = log.follower('r3:a');
    try {
      await log.append('r3:a', [ev(1), ev(2)], info);
      assert.deepEqual(await readUntil(f, 0, 2), [1, 2]);
      const reader = (await others(admin)).filter((l) => l.includes('cmd=xread'));
      assert.equal(reader.length, 1);
      const next = readUntil(f, 2, 4);
      await sleep(50);
      await admin.call('CLIENT', 'KILL', 'ID', /^id=(\d+)/.exec(reader[0]!)![1]!);
      await log.append('r3:a', [ev(3), ev(4)]);
      assert.deepEqual(await next, [3, 4], 'after CLIENT KILL');

      const after = readUntil(f, 4, 6, 15_000);
      await sleep(50);
      server = await restartRedis(server!);
      for (let i = 0; i < 100; i++) {
        if (await log.append('r3:a', [ev(5), ev(6)]).then(() => true, () => false)) break;
        await sleep(100);
      }
      assert.deepEqual(await after, [5, 6], 'after a restart');
    } finally {
      f.close();
    }
  });

  it('a follower still in use when the log closes: its wait ends, and its next read fails (no loop of empty reads)', async () => {
    const { log } = await start();
    const f = log.follower('r4:a');
    const waiting = f.next(0, 5_000);
    await sleep(50);
    await log.close();
    assert.deepEqual(await waiting, []);
    await assert.rejects(f.next(0, 5_000), /closed/);
  });

  it('on a Cluster (one command per hash slot): streams of 20 sessions are read through the command connections, each in order', { timeout: 60_000 }, async () => {
    const cluster = await startCluster();
    const nodes = cluster.nodes.map((n) => new Redis(n.port, '127.0.0.1'));
    const client = connectRedis({ ...config(''), url: undefined, cluster: cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })) }, { enableOfflineQueue: true });
    const log = new RedisEventLog(client, { prefix: 't:', replicaAcks: 0, replicaAckTimeoutMs: 100, ttlMs: 60_000, maxLength: 1_000 });
    // Every node's connections but the test's own.
    const count = async () => (await Promise.all(nodes.map(async (n) => (await others(n)).length))).reduce((a, b) => a + b, 0);
    const keys = Array.from({ length: 20 }, (_, i) => `c${i}:s`);
    const followers: Follower[] = [];
    try {
      for (const key of keys) await log.append(key, [ev(0, '', { hidden: true })], info);
      const before = await count();
      followers.push(...keys.map((key) => log.follower(key)));
      const reads = followers.map((f) => readUntil(f, 0, 4));
      await sleep(200);
      for (let seq = 1; seq <= 4; seq += 2) await Promise.all(keys.map((key) => log.append(key, [ev(seq), ev(seq + 1)])));
      for (const [i, read] of reads.entries()) assert.deepEqual(await read, [1, 2, 3, 4], keys[i]);
      assert.equal(await count(), before, 'no connection for following');
    } finally {
      for (const f of followers) f.close();
      await log.close();
      client.disconnect();
      for (const n of nodes) n.disconnect();
      await cluster.stop();
    }
  });
});
