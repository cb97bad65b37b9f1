import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { INIT, openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { metricValue, until } from '../helpers/streams.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const call = (name: string) => ({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name, arguments: {} } });
const READ = { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'res://doc' } };

describe('retries of safe calls', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  let url: string;
  let sid: string;
  before(async () => {
    up = await startScriptedUpstream();
    // maxFails 0: these failures must not eject the only replica (the breaker has its own test).
    gw = await startGateway({ servers: { api: { upstreams: [{ url: up.url }], maxFails: 0, retry: { backoff: '10ms' } } } });
    url = `${gw.url}/mcp/api`;
    sid = await openSession(url);
    // The gateway learns the tools' annotations from the list.
    assert.equal((await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, sessionHeaders(sid))).status, 200);
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  it('a read that fails twice (a 503, then a dropped connection) is retried and succeeds', async () => {
    up.fail('resources/read res://doc', 1, 'status');
    up.fail('resources/read res://doc', 1, 'reset');
    const res = await post(url, READ, sessionHeaders(sid));
    assert.equal(res.status, 200, res.text);
    assert.match(JSON.stringify(rpcOf(res).result), /res:\/\/doc rev 1/);
    assert.equal(up.attempts('resources/read res://doc'), 3);
    assert.equal(up.done('resources/read res://doc'), 1);
  });

  it('never runs a tool that is neither read-only nor idempotent twice', async () => {
    // It ran, then the connection dropped before the answer: a retry would run it again.
    up.fail('tools/call charge', 1, 'after');
    const lost = await post(url, call('charge'), sessionHeaders(sid));
    assert.equal(lost.status, 502, lost.text);
    assert.equal(rpcOf(lost).error?.data?.code, 'MCPGW_ERR_UPSTREAM_UNAVAILABLE');
    assert.equal(up.attempts('tools/call charge'), 1);
    assert.equal(up.done('tools/call charge'), 1, 'executed exactly once');
    // A 503 is not retried either: the caller decides.
    up.fail('tools/call charge', 1, 'status');
    assert.equal((await post(url, call('charge'), sessionHeaders(sid))).status, 503);
    assert.equal(up.attempts('tools/call charge'), 2);
    assert.equal(up.done('tools/call charge'), 1);
  });

  it('retries a tool annotated idempotentHint', async () => {
    up.fail('tools/call put', 2, 'status');
    const res = await post(url, call('put'), sessionHeaders(sid));
    assert.equal(res.status, 200, res.text);
    assert.equal(up.attempts('tools/call put'), 3);
    assert.equal(up.done('tools/call put'), 1);
  });

  it('gives up after `retry.attempts` tries and passes the last answer on', async () => {
    const before = up.attempts('resources/read res://doc');
    up.fail('resources/read res://doc', 3, 'status');
    assert.equal((await post(url, READ, sessionHeaders(sid))).status, 503);
    assert.equal(up.attempts('resources/read res://doc') - before, 3);
  });

  it('stops retrying when the replica retry budget is spent', async () => {
    const strict = await startGateway({ servers: { api: { upstreams: [{ url: up.url }], maxFails: 0, retry: { backoff: '10ms', budget: 0, minPerSecond: 0 } } } });
    try {
      const s = await openSession(`${strict.url}/mcp/api`);
      const before = up.attempts('resources/read res://doc');
      up.fail('resources/read res://doc', 1, 'status');
      assert.equal((await post(`${strict.url}/mcp/api`, READ, sessionHeaders(s))).status, 503);
      assert.equal(up.attempts('resources/read res://doc') - before, 1, 'no retry without budget');
    } finally {
      await strict.close();
    }
  });
});

describe('circuit breaker', () => {
  let port: number;
  let demo: HttpUpstreamProcess;
  let gw: Gateway;
  let url: string;
  before(async () => {
    port = await freePort();
    demo = await startDemoUpstream('a', port);
    gw = await startGateway({ servers: { api: { upstreams: [{ url: demo.url }], maxFails: 1, failTimeout: '1s' } } });
    url = `${gw.url}/mcp/api`;
  });
  after(async () => {
    await gw?.close();
    await demo?.stop();
  });

  it('a killed replica opens its breaker, the server fails fast naming itself, and a trial closes it again once it is back', async () => {
    const breaker = () => metricValue(gw, 'mcp_upstream_breaker_state', { server: 'api' });
    const [s1, s2] = [await openSession(url), await openSession(url)];
    assert.equal(await breaker(), 0, 'closed');

    await demo.child.kill('SIGKILL');
    const lost = await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, sessionHeaders(s1));
    assert.equal(lost.status, 404, 'its session died with it');
    assert.equal(await breaker(), 2, 'open');

    const started = Date.now();
    const fast = await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, sessionHeaders(s2));
    assert.equal(fast.status, 503, fast.text);
    assert.equal(rpcOf(fast).error?.data?.code, 'MCPGW_ERR_NO_HEALTHY_UPSTREAM');
    assert.match(rpcOf(fast).error!.message, /server "api"/);
    assert.ok(Date.now() - started < 500, 'without trying the upstream');

    demo = await startDemoUpstream('a', port);
    await until(async () => (await breaker()) === 1, 'half-open after failTimeout', 3_000);
    const trial = await post(url, INIT);
    assert.equal(trial.status, 200, trial.text);
    assert.equal(await breaker(), 0, 'a successful trial closes it');
  });
});
