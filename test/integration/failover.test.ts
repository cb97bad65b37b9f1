import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { openSession, post, rpcOf } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { postSse, progressOf, readSse, resumeSse, slowCount } from '../helpers/sse.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const V = { 'mcp-protocol-version': '2025-11-25' };
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/**
 * The product's promise, end to end with real processes: a client that loses its replica — even
 * to SIGKILL — resumes on another with Last-Event-ID and misses nothing.
 */
describe('resumption across gateway replicas (processes, one Redis)', () => {
  let redis: RedisServer;
  let upstream: HttpUpstreamProcess;
  let a: GatewayProcess;
  let b: GatewayProcess;
  before(async () => {
    [redis, upstream] = await Promise.all([startRedis(), startDemoUpstream('u')]);
    const doc = { redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } };
    [a, b] = await Promise.all([spawnGateway(doc), spawnGateway(doc)]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await Promise.all([upstream?.stop(), redis?.stop()]);
  });

  it('replica A is SIGKILLed mid-stream: B delivers every remaining notification and the result exactly once, in order', async () => {
    const sid = await openSession(`${a.url}/mcp/api`);
    const headers = { 'mcp-session-id': sid, ...V };
    const { res, abort } = await postSse(`${a.url}/mcp/api`, slowCount(42, 50, 60), headers);
    const first = await readSse(res, (_e, all) => progressOf(all).length >= 15, abort);
    assert.deepEqual(progressOf(first), range(1, 15));
    await a.child.kill('SIGKILL');

    const again = await resumeSse(`${b.url}/mcp/api`, first.at(-1)!.id!, headers);
    assert.equal(again.res.status, 200);
    const rest = await readSse(again.res, (e) => e.message?.id === 42);
    assert.deepEqual(progressOf(rest), range(16, 50), 'every remaining progress notification, once, in order');
    const results = rest.filter((e) => e.message?.id === 42);
    assert.equal(results.length, 1);
    assert.match(JSON.stringify(results[0]!.message), /counted to 50/);

    // B counted a takeover with upstream resumption.
    const metrics = await (await fetch(`${b.metricsUrl}/metrics`)).text();
    assert.match(metrics, /^mcp_resume_total\{outcome="upstream"\} [1-9]/m);

    // The session itself keeps working on B.
    const echo = await post(`${b.url}/mcp/api`, { jsonrpc: '2.0', id: 43, method: 'tools/call', params: { name: 'echo', arguments: { text: 'on B' } } }, headers);
    assert.equal(echo.status, 200);
    assert.match(JSON.stringify(rpcOf(echo)), /on B/);
  });

  it('a client that drops from a live replica resumes on the other, which follows the log', async () => {
    const sid = await openSession(`${b.url}/mcp/api`);
    const headers = { 'mcp-session-id': sid, ...V };
    const c = await spawnGateway({ redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
    try {
      const { res, abort } = await postSse(`${b.url}/mcp/api`, slowCount(5, 30, 40), headers);
      const first = await readSse(res, (_e, all) => progressOf(all).length >= 5, abort);
      const rest = await readSse((await resumeSse(`${c.url}/mcp/api`, first.at(-1)!.id!, headers)).res, (e) => e.message?.id === 5);
      assert.deepEqual(progressOf(rest), range(6, 30));
      assert.equal(rest.filter((e) => e.message?.id === 5).length, 1);
    } finally {
      await c.stop();
    }
  });
});
