import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { initializeLegacy, LegacyStream, postMessage, type LegacyEvent } from '../helpers/legacy.ts';
import { openSession } from '../helpers/raw.ts';
import { restartRedis, startRedis, type RedisServer } from '../helpers/redis.ts';
import { postSse, progressOf, readSse, resumeSse, slowCount } from '../helpers/sse.ts';
import { until } from '../helpers/streams.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const V = { 'mcp-protocol-version': '2025-11-25' };
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const legacyProgress = (events: readonly LegacyEvent[]) => events.filter((e) => e.message?.method === 'notifications/progress').map((e) => e.message!.params!.progress!);
const answered = (id: unknown) => (events: readonly LegacyEvent[]) => events.some((e) => e.message?.id === id && e.message?.method === undefined);

async function ready(gw: Gateway): Promise<void> {
  for (let i = 0; i < 100 && (await fetch(`${gw.url}/readyz`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 50));
}

/**
 * Redis' connections are shared by every replica (maxclients, 10,000 by default): a stream that
 * follows the log — every 2024-11-05 stream, every resumption of a stream produced elsewhere —
 * must not cost one. Checked on a real redis-server with CLIENT LIST.
 */
describe('streams following the event log share one Redis connection per replica', () => {
  let redis: RedisServer;
  let upstream: HttpUpstreamProcess;
  let admin: Redis;
  let a: Gateway;
  let b: Gateway;
  before(async () => {
    [redis, upstream] = await Promise.all([startRedis(), startDemoUpstream('u')]);
    admin = new Redis(redis.url);
    admin.on('error', () => {}); // the last case restarts Redis
    const doc = { redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }], maxSessionsPerCaller: 100 } } };
    [a, b] = await Promise.all([startGateway(doc), startGateway(doc)]);
    await Promise.all([ready(a), ready(b)]);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    admin?.disconnect();
    await Promise.all([upstream?.stop(), redis?.stop()]);
  });

  /** The gateways' connections (every client but this test's own). */
  async function connections(): Promise<string[]> {
    const list = (await admin.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string;
    const me = String(await admin.client('ID'));
    return list.split('\n').filter((l) => l.startsWith('id=') && !l.startsWith(`id=${me} `));
  }

  it('30 legacy SSE streams cost no more connections than one, and each gets its events in order', { timeout: 60_000 }, async (t) => {
    const sse = `${a.url}/mcp/api/sse`;
    const open = async () => {
      const stream = await LegacyStream.open(sse);
      await stream.until((events) => events.length > 0);
      const endpoint = stream.endpoint(sse);
      await initializeLegacy(stream, endpoint.replace(a.url, b.url));
      return { stream, endpoint };
    };
    const streams = [await open()];
    const withOne = (await connections()).length;
    streams.push(...(await Promise.all(Array.from({ length: 29 }, open))));
    try {
      const withThirty = (await connections()).length;
      t.diagnostic(`the gateways' Redis connections: ${withOne} with 1 legacy stream, ${withThirty} with 30`);
      assert.equal(withThirty, withOne, 'opening 29 more streams opened no connection');
      // Every stream gets its own call's events, produced on B, while all 30 are followed on A.
      await Promise.all(streams.map(({ endpoint }, i) => postMessage(endpoint.replace(a.url, b.url), slowCount(100 + i, 10, 30))));
      await until(() => streams.every(({ stream }) => legacyProgress(stream.events).length >= 3), 'every stream to be mid-call', 20_000);
      assert.equal((await connections()).length, withOne, 'none while 30 streams are live either');
      for (const [i, { stream }] of streams.entries()) {
        const events = await stream.until(answered(100 + i), 20_000);
        assert.deepEqual(legacyProgress(events), range(1, 10), `stream ${i}: every event once, in order`);
      }
    } finally {
      for (const { stream } of streams) stream.drop();
    }
  });

  it('20 Streamable HTTP streams produced on A and followed on B at once cost B no connection per stream', { timeout: 60_000 }, async (t) => {
    const url = `${a.url}/mcp/api`;
    const start = async (i: number) => {
      const headers = { 'mcp-session-id': await openSession(url), ...V };
      const { res, abort } = await postSse(url, slowCount(200 + i, 40, 50), headers);
      const first = await readSse(res, (_e, all) => progressOf(all).length >= 2, abort);
      return { headers, first, id: 200 + i };
    };
    const follow = async ({ headers, first, id }: Awaited<ReturnType<typeof start>>) => {
      const again = await resumeSse(`${b.url}/mcp/api`, first.at(-1)!.id!, headers);
      assert.equal(again.res.status, 200);
      return { again, first, id };
    };
    // One stream followed to its end first: B has what it needs to follow the log at all.
    const warm = await follow(await start(0));
    await readSse(warm.again.res, (e) => e.message?.id === warm.id);
    const withOne = (await connections()).length;
    const all = await Promise.all(Array.from({ length: 20 }, async (_, i) => follow(await start(i + 1))));
    const counted = (await connections()).length;
    const rest = await Promise.all(all.map(({ again, id }) => readSse(again.res, (e) => e.message?.id === id)));
    t.diagnostic(`the gateways' Redis connections: ${withOne} before, ${counted} while B follows 20 streams`);
    assert.equal(counted, withOne, 'following 20 streams at once opened no connection');
    for (const [i, { first }] of all.entries()) {
      assert.deepEqual([...progressOf(first), ...progressOf(rest[i]!)], range(1, 40), `stream ${i}: every event once, in order`);
    }
  });

  it("the follow connection killed mid-stream: the stream goes on from where it was, nothing lost or repeated", { timeout: 60_000 }, async () => {
    const sse = `${a.url}/mcp/api/sse`;
    const stream = await LegacyStream.open(sse);
    try {
      await stream.until((events) => events.length > 0);
      const endpoint = stream.endpoint(sse);
      await initializeLegacy(stream, endpoint);
      assert.equal((await postMessage(endpoint, slowCount(300, 30, 40))).status, 202);
      await stream.until((events) => legacyProgress(events).length >= 5);
      const readers = (await connections()).filter((l) => l.includes('cmd=xread'));
      assert.ok(readers.length > 0);
      for (const l of readers) await admin.call('CLIENT', 'KILL', 'ID', /^id=(\d+)/.exec(l)![1]!);
      const events = await stream.until(answered(300), 20_000);
      assert.deepEqual(legacyProgress(events), range(1, 30));
      const ids = events.map((e) => e.id).filter(Boolean);
      assert.equal(new Set(ids).size, ids.length, 'no event twice');
    } finally {
      stream.drop();
    }
  });

  it('Redis restarted mid-session: the same stream gets what comes after, on the same number of connections', { timeout: 60_000 }, async () => {
    const sse = `${a.url}/mcp/api/sse`;
    const stream = await LegacyStream.open(sse);
    try {
      await stream.until((events) => events.length > 0);
      const endpoint = stream.endpoint(sse).replace(a.url, b.url);
      await initializeLegacy(stream, endpoint);
      const echo = (id: number, text: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text } } });
      assert.equal((await postMessage(endpoint, echo(400, 'before'))).status, 202);
      await stream.until(answered(400));
      await until(async () => (await connections()).some((l) => l.includes('cmd=xread')), 'A to follow the log');
      const count = (await connections()).length;

      redis = await restartRedis(redis);
      await Promise.all([ready(a), ready(b)]);
      let status = 0;
      for (let i = 0; i < 50 && status !== 202; i++) {
        status = (await postMessage(endpoint, echo(401, 'after'))).status;
        if (status !== 202) await new Promise((r) => setTimeout(r, 100));
      }
      const events = await stream.until(answered(401), 20_000);
      assert.match(JSON.stringify(events.find((e) => e.message?.id === 401)!.message), /after/);
      const ids = events.map((e) => e.id).filter(Boolean);
      assert.equal(new Set(ids).size, ids.length, 'no event twice');
      // Every connection is made again (ioredis), none more.
      await until(async () => (await connections()).length === count, `${count} connections again`, 10_000);
      assert.equal((await connections()).length, count);
    } finally {
      stream.drop();
    }
  });
});
