import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { metricValue, openGetStream, until } from '../helpers/streams.ts';

const V = '2025-11-25';
const session = (sid: string, extra: Record<string, string> = {}) => ({ ...sessionHeaders(sid), ...extra });

type Rpc = ReturnType<typeof rpcOf>;
async function rpc(gw: Gateway, sid: string, method: string, params: Record<string, unknown> = {}, headers: Record<string, string> = {}): Promise<Rpc> {
  const res = await post(`${gw.url}/mcp/api`, { jsonrpc: '2.0', id: 7, method, params }, session(sid, headers));
  assert.equal(res.status, 200, res.text);
  const msg = rpcOf(res);
  assert.equal(msg.id, 7);
  return msg;
}
const textOf = (msg: Rpc) => (msg.result as { contents: { text: string }[] }).contents[0]!.text;
const read = async (gw: Gateway, sid: string, uri = 'res://doc', headers: Record<string, string> = {}) => textOf(await rpc(gw, sid, 'resources/read', { uri }, headers));
const hits = (gw: Gateway, method = 'resources/read') => metricValue(gw, 'mcp_cache_hits_total', { method });
const misses = (gw: Gateway, method = 'resources/read') => metricValue(gw, 'mcp_cache_misses_total', { method });

describe('result cache: two replicas sharing Redis', () => {
  let redis: RedisServer;
  let up: ScriptedUpstream;
  let a: Gateway;
  let b: Gateway;
  let sid: string;
  before(async () => {
    [redis, up] = await Promise.all([startRedis(), startScriptedUpstream()]);
    const doc = { redis: { url: redis.url }, servers: { api: { upstreams: [{ url: up.url }], cache: { ttl: '1m' } } } };
    [a, b] = await Promise.all([startGateway(doc), startGateway(doc)]);
    await until(() => a.notReady().length === 0 && b.notReady().length === 0, 'both replicas connected to Redis');
    sid = await openSession(`${a.url}/mcp/api`);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await Promise.all([up?.close(), redis?.stop()]);
  });

  it('five reads make one upstream read and four hits, on either replica', async () => {
    const [hitsBefore, missesBefore] = [(await hits(a)) + (await hits(b)), (await misses(a)) + (await misses(b))];
    const texts = [];
    for (const gw of [a, b, a, b, a]) texts.push(await read(gw, sid));
    assert.deepEqual(texts, Array(5).fill('res://doc rev 1'));
    assert.equal(up.done('resources/read res://doc'), 1);
    assert.equal((await hits(a)) + (await hits(b)) - hitsBefore, 4);
    assert.equal((await misses(a)) + (await misses(b)) - missesBefore, 1);
  });

  it('a tools/call empties the server cache; one annotated readOnlyHint does not', async () => {
    await rpc(a, sid, 'tools/list'); // the replica learns the annotations
    const before = up.done('resources/read res://doc');
    await read(a, sid);
    await rpc(a, sid, 'tools/call', { name: 'lookup', arguments: {} });
    await read(a, sid);
    assert.equal(up.done('resources/read res://doc'), before, 'a read-only tool kept the cache');
    await rpc(a, sid, 'tools/call', { name: 'charge', arguments: {} });
    assert.equal(await read(a, sid), `res://doc rev ${before + 1}`);
    assert.equal(up.done('resources/read res://doc'), before + 1, 'a fresh upstream read');
  });

  it('an invalidation on replica A is seen by replica B', async () => {
    await read(b, sid);
    const before = up.done('resources/read res://doc');
    await read(b, sid);
    assert.equal(up.done('resources/read res://doc'), before, 'B answers from the cache');
    await rpc(a, sid, 'tools/call', { name: 'charge', arguments: {} });
    assert.equal(await read(b, sid), `res://doc rev ${before + 1}`);
  });

  it('keys on the canonical params: key order and _meta do not matter, the URI does', async () => {
    await rpc(a, sid, 'resources/read', { uri: 'res://doc', _meta: { progressToken: 5 } });
    const [reads, hitsB] = [up.done('resources/read res://doc'), await hits(b)];
    await rpc(b, sid, 'resources/read', { _meta: { progressToken: 6 }, uri: 'res://doc' });
    assert.equal(up.done('resources/read res://doc'), reads);
    assert.equal(await hits(b), hitsB + 1);
    const misses0 = await misses(a);
    await rpc(a, sid, 'resources/read', { uri: 'res://other' });
    assert.equal(await misses(a), misses0 + 1);
  });
});

// Notifications come on GET streams, tested here with the memory event log; the invalidation one
// causes is the same shared version bump as a tools/call's above.
describe('result cache: one replica, in memory, SSE answers', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  let sid: string;
  before(async () => {
    up = await startScriptedUpstream({ sse: true, readDelayMs: 150 });
    gw = await startGateway({ servers: { api: { upstreams: [{ url: up.url }], cache: { ttl: '1m' } } } });
    sid = await openSession(`${gw.url}/mcp/api`);
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  it('captures the result from an SSE answer; concurrent misses make one upstream call', async () => {
    const texts = await Promise.all([0, 1, 2, 3, 4].map(() => read(gw, sid)));
    assert.deepEqual(texts, Array(5).fill('res://doc rev 1'));
    assert.equal(up.done('resources/read res://doc'), 1);
    assert.equal(await hits(gw), 4);
    assert.equal(await misses(gw), 1);
    // A hit is JSON, answered without the upstream.
    const res = await post(`${gw.url}/mcp/api`, { jsonrpc: '2.0', id: 'h', method: 'resources/read', params: { uri: 'res://doc' } }, session(sid));
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.deepEqual(rpcOf(res), { jsonrpc: '2.0', id: 'h', result: { contents: [{ uri: 'res://doc', mimeType: 'text/plain', text: 'res://doc rev 1' }] } });
  });

  it('notifications/resources/updated for the URI forces a fresh read of it, and only of it', async () => {
    await read(gw, sid);
    await read(gw, sid, 'res://mine');
    const [doc, mine] = [up.done('resources/read res://doc'), up.done('resources/read res://mine')];
    const stream = await openGetStream(`${gw.url}/mcp/api`, session(sid));
    try {
      await until(() => up.openStreams > 0, 'the upstream GET stream');
      assert.equal(up.notify('notifications/resources/updated', { uri: 'res://doc' }), 1);
      await stream.waitFor('notifications/resources/updated');
      assert.equal(await read(gw, sid), `res://doc rev ${doc + 1}`);
      await read(gw, sid, 'res://mine');
      assert.equal(up.done('resources/read res://mine'), mine, 'another URI stays cached');
    } finally {
      stream.close();
    }
  });

  it('notifications/tools/list_changed forces a fresh tools/list', async () => {
    await rpc(gw, sid, 'tools/list');
    const lists = up.done('tools/list');
    await rpc(gw, sid, 'tools/list');
    assert.equal(up.done('tools/list'), lists, 'cached');
    const stream = await openGetStream(`${gw.url}/mcp/api`, session(sid));
    try {
      await until(() => up.openStreams > 0, 'the upstream GET stream');
      up.notify('notifications/tools/list_changed');
      await stream.waitFor('list_changed');
      await rpc(gw, sid, 'tools/list');
      assert.equal(up.done('tools/list'), lists + 1);
    } finally {
      stream.close();
    }
  });

  it("caps the TTL at a result's ttlMs", async () => {
    assert.equal(await read(gw, sid, 'res://short'), 'res://short rev 1');
    assert.equal(await read(gw, sid, 'res://short'), 'res://short rev 1');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(await read(gw, sid, 'res://short'), 'res://short rev 2');
  });

  it('without auth, a private result stays in its session', async () => {
    const other = await openSession(`${gw.url}/mcp/api`);
    assert.equal(await read(gw, sid, 'res://mine'), 'res://mine rev 1');
    assert.equal(await read(gw, sid, 'res://mine'), 'res://mine rev 1');
    assert.equal(await read(gw, other, 'res://mine'), 'res://mine rev 2');
  });
});

describe('result cache and auth', () => {
  let issuer: TestIssuer;
  let up: ScriptedUpstream;
  let gw: Gateway;
  const tokens: Record<string, string> = {};
  const sids: Record<string, string> = {};
  const as = (who: string) => ({ authorization: `Bearer ${tokens[who]}` });
  before(async () => {
    [issuer, up] = await Promise.all([startTestIssuer(), startScriptedUpstream()]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: 'mcp' },
      servers: { api: { upstreams: [{ url: up.url }], cache: { ttl: '1m' }, auth: { tools: { charge: { scopes: ['admin'] } } } } },
    });
    for (const [who, scope] of [['alice', 'admin'], ['bob', 'mcp']] as const) {
      tokens[who] = await issuer.sign({ sub: who, aud: 'mcp', scope });
      sids[who] = await openSession(`${gw.url}/mcp/api`, V, as(who));
    }
  });
  after(async () => {
    await gw?.close();
    await Promise.all([up?.close(), issuer?.close()]);
  });

  it('never serves a private-scope result to a second principal; public ones are shared', async () => {
    assert.equal(await read(gw, sids.alice!, 'res://mine', as('alice')), 'res://mine rev 1');
    assert.equal(await read(gw, sids.alice!, 'res://mine', as('alice')), 'res://mine rev 1', 'her own, from the cache');
    assert.equal(await read(gw, sids.bob!, 'res://mine', as('bob')), 'res://mine rev 2', "not alice's");
    assert.equal(up.done('resources/read res://mine'), 2);
    await read(gw, sids.alice!, 'res://doc', as('alice'));
    await read(gw, sids.bob!, 'res://doc', as('bob'));
    assert.equal(up.done('resources/read res://doc'), 1, 'a public result is one entry for everyone');
  });

  it('filters a cached list for each caller: stored whole, filtered when served', async () => {
    const admin = await rpc(gw, sids.alice!, 'tools/list', {}, as('alice'));
    const names = (msg: Rpc) => (msg.result as { tools: { name: string }[] }).tools.map((t) => t.name).sort();
    assert.deepEqual(names(admin), ['charge', 'lookup', 'put', 'slow']);
    const reader = await rpc(gw, sids.bob!, 'tools/list', {}, as('bob'));
    assert.deepEqual(names(reader), ['lookup', 'put', 'slow']);
    assert.equal(up.done('tools/list'), 1, "bob's list came from the cache");
    assert.equal(await hits(gw, 'tools/list'), 1);
  });

  it('a call of a tool the caller may not see runs nothing and keeps the cache', async () => {
    await read(gw, sids.alice!, 'res://doc', as('alice'));
    const reads = up.done('resources/read res://doc');
    const hidden = await post(`${gw.url}/mcp/api`, { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'charge', arguments: {} } }, session(sids.bob!, as('bob')));
    assert.equal(rpcOf(hidden).error?.message, 'Tool charge not found', 'answered like an unknown tool');
    assert.equal(up.done('tools/call charge'), 0);
    await read(gw, sids.alice!, 'res://doc', as('alice'));
    assert.equal(up.done('resources/read res://doc'), reads, 'still cached');
  });
});
