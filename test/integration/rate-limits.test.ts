import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { metricValue, until } from '../helpers/streams.ts';

const ping = (id: number) => ({ jsonrpc: '2.0', id, method: 'ping' });
const call = (id: number, name: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });

describe('rate limits shared by two replicas through Redis', () => {
  let redis: RedisServer;
  let up: ScriptedUpstream;
  let a: Gateway;
  let b: Gateway;
  before(async () => {
    [redis, up] = await Promise.all([startRedis(), startScriptedUpstream()]);
    const doc = {
      redis: { url: redis.url },
      servers: {
        api: { upstreams: [{ url: up.url }], rateLimit: { principal: { requests: 6, per: '1m' } } },
        tools: { upstreams: [{ url: up.url }], rateLimit: { tools: { charge: { requests: 2, per: '1m' } } } },
      },
    };
    [a, b] = await Promise.all([startGateway(doc), startGateway(doc)]);
    // Until Redis is connected a replica limits on its own (the fallback): start from the shared state.
    await until(() => a.notReady().length === 0 && b.notReady().length === 0, 'both replicas connected to Redis');
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await Promise.all([up?.close(), redis?.stop()]);
  });

  it('N per minute holds across both replicas: then 429, Retry-After and a JSON-RPC error', async () => {
    const sid = await openSession(`${a.url}/mcp/api`); // initialize is the first of the 6
    const statuses: number[] = [];
    let refused;
    for (let i = 0; i < 8; i++) {
      const gw = i % 2 === 0 ? a : b;
      const res = await post(`${gw.url}/mcp/api`, ping(100 + i), sessionHeaders(sid));
      statuses.push(res.status);
      if (res.status === 429) refused ??= res;
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    const seconds = Number(refused!.headers.get('retry-after'));
    assert.ok(seconds >= 1 && seconds <= 10, `Retry-After ${seconds}`);
    const msg = rpcOf(refused!);
    assert.equal(msg.id, 105);
    assert.equal(msg.error?.code, -31016);
    assert.equal(msg.error?.data?.code, 'MCPGW_ERR_RATE_LIMITED');
    assert.match(msg.error!.message, /server "api": the principal limit/);
    const counted = (await metricValue(a, 'mcp_rate_limited_total', { server: 'api', scope: 'principal' })) + (await metricValue(b, 'mcp_rate_limited_total', { server: 'api', scope: 'principal' }));
    assert.equal(counted, 3);
    assert.equal(up.attempts('ping'), 5, 'refused calls never reached the upstream');
  });

  it('a tool limit counts calls of that tool only', async () => {
    const sid = await openSession(`${b.url}/mcp/tools`);
    const statuses = [];
    for (const [i, name] of ['charge', 'lookup', 'charge', 'lookup', 'charge'].entries()) statuses.push((await post(`${(i % 2 ? a : b).url}/mcp/tools`, call(i, name), sessionHeaders(sid))).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 429]);
    assert.equal(up.done('tools/call charge'), 2);
  });
});
