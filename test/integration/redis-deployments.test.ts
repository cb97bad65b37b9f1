import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSession, post, request, rpcOf } from '../helpers/raw.ts';
import { startCluster, startRedis, startSentinelSet, type RedisCluster, type RedisServer, type SentinelSet } from '../helpers/redis.ts';
import { postSse, progressOf, readSse, resumeSse, slowCount } from '../helpers/sse.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const V = { 'mcp-protocol-version': '2025-11-25' };
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const ECHO = (text: string) => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text } } });

async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await sleep(100);
  }
  return false;
}

let upstream: HttpUpstreamProcess;
before(async () => {
  upstream = await startDemoUpstream('u');
});
after(async () => {
  await upstream?.stop();
});

describe('Redis goes away and comes back', () => {
  let redis: RedisServer;
  let gw: Gateway;
  before(async () => {
    redis = await startRedis();
    gw = await startGateway({ redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
  });
  after(async () => {
    await gw?.close();
    await redis?.stop();
  });

  it('keeps proxying without resumption, reports it on /readyz, and recovers by itself', async () => {
    const url = `${gw.url}/mcp/api`;
    const sid = await openSession(url);
    const headers = { 'mcp-session-id': sid, ...V };
    assert.equal((await request(`${gw.url}/readyz`, 'GET')).status, 200);

    await redis.child.kill('SIGKILL');
    assert.ok(await until(async () => (await request(`${gw.url}/readyz`, 'GET')).status === 503, 5_000), 'readyz reports the outage');
    assert.match((await request(`${gw.url}/readyz`, 'GET')).text, /redis unreachable/);

    // Proxying goes on: JSON and SSE answers; SSE events carry no ids (nothing to resume from).
    assert.match(JSON.stringify(rpcOf(await post(url, ECHO('no redis'), headers))), /no redis/);
    const events = await readSse((await postSse(url, slowCount(2, 3, 5), headers)).res, () => false);
    assert.deepEqual(progressOf(events), [1, 2, 3]);
    assert.ok(events.every((e) => e.id === undefined), 'no resumable ids while the log is down');
    const fresh = await openSession(url);
    assert.ok(fresh, 'new sessions start');

    // Redis comes back on the same address: the gateway reconnects without a restart.
    redis = await startRedis(redis.port);
    assert.ok(await until(async () => (await request(`${gw.url}/readyz`, 'GET')).status === 200, 10_000), 'ready again');
    const { res, abort } = await postSse(url, slowCount(3, 8, 20), headers);
    const first = await readSse(res, (_e, all) => progressOf(all).length >= 3, abort);
    assert.match(first.at(-1)!.id ?? '', /\.\d+$/, 'ids are back');
    const rest = await readSse((await resumeSse(url, first.at(-1)!.id!, headers)).res, (e) => e.message?.id === 3);
    assert.deepEqual(progressOf(rest), range(4, 8));
  });
});

describe('Redis Sentinel', () => {
  let set: SentinelSet;
  let gw: Gateway;
  before(async () => {
    set = await startSentinelSet();
    gw = await startGateway({
      redis: { sentinels: [{ host: '127.0.0.1', port: set.sentinelPort }], name: set.name },
      events: { replicaAcks: 1, replicaAckTimeout: '2s' },
      servers: { api: { upstreams: [{ url: upstream.url }] } },
    });
  });
  after(async () => {
    await gw?.close();
    await set?.stop();
  });

  it('a failover during a stream loses no event the client was sent', async () => {
    const url = `${gw.url}/mcp/api`;
    const sid = await openSession(url);
    const headers = { 'mcp-session-id': sid, ...V };
    const { res } = await postSse(url, slowCount(11, 40, 50), headers);
    const reading = readSse(res, (e) => e.message?.id === 11);
    await sleep(500);
    await set.failover();
    const events = await reading;
    assert.deepEqual(progressOf(events), range(1, 40), 'the client got the whole stream');

    // Every event id the client was sent is in the log on the new master.
    const sent = events.filter((e) => e.id && e.data).map((e) => e.id!);
    assert.ok(sent.length >= 5, `events with ids before the failover: ${sent.length}`);
    const streamId = sent[0]!.slice(0, sent[0]!.lastIndexOf('.'));
    const claims = gw.sealer.open(sid)!;
    const newMaster = new Redis(set.replica.port, '127.0.0.1');
    try {
      const entries = (await newMaster.xrange(`mcpgw:ev:{${claims.id}}:${streamId}`, '-', '+')) as [string, string[]][];
      const logged = new Set(entries.map(([id]) => `${streamId}.${id.slice(id.indexOf('-') + 1)}`));
      for (const id of sent) assert.ok(logged.has(id), `event ${id} was sent but is not in the log`);
    } finally {
      newMaster.disconnect();
    }

    // And the gateway keeps logging on the new master (once it has found it, and the new master a replica).
    assert.ok(
      await until(async () => {
        const again = await readSse((await postSse(url, slowCount(12, 2, 1), headers)).res, () => false);
        return again.some((e) => e.id && e.data);
      }, 30_000),
      'resumable streams after the failover',
    );
  });
});

describe('Redis Cluster', () => {
  let cluster: RedisCluster;
  let a: Gateway;
  let b: Gateway;
  before(async () => {
    cluster = await startCluster();
    const doc = { redis: { cluster: cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })) }, servers: { api: { upstreams: [{ url: upstream.url }] } } };
    [a, b] = await Promise.all([startGateway(doc), startGateway(doc)]);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await cluster?.stop();
  });

  it('serves sessions and resumes streams across replicas', async () => {
    for (let i = 0; i < 3; i++) {
      const sid = await openSession(`${a.url}/mcp/api`);
      const headers = { 'mcp-session-id': sid, ...V };
      const { res, abort } = await postSse(`${a.url}/mcp/api`, slowCount(20 + i, 10, 20), headers);
      const first = await readSse(res, (_e, all) => progressOf(all).length >= 3, abort);
      const rest = await readSse((await resumeSse(`${b.url}/mcp/api`, first.at(-1)!.id!, headers)).res, (e) => e.message?.id === 20 + i);
      assert.deepEqual(progressOf(rest), range(4, 10));
      const del = await request(`${a.url}/mcp/api`, 'DELETE', headers);
      assert.equal(del.status, 200);
      assert.equal((await post(`${b.url}/mcp/api`, ECHO('x'), headers)).status, 404, 'ended on every replica');
    }
    assert.equal((await request(`${b.url}/readyz`, 'GET')).status, 200);
  });
});
