import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { demoServerPath } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { INIT, openSession, post, request, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { until } from '../helpers/streams.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

interface Verbose {
  status: string;
  reasons?: string[];
  servers: Record<string, { state: string; kind: string; replicas: number; healthyReplicas: number }>;
}

/** Readiness is the replica's; each server's health is shown, exported and logged, and never takes the replica out. */
describe('readiness per replica, health per server', () => {
  let upstream: HttpUpstreamProcess;
  let gw: Gateway;
  const lines: Record<string, unknown>[] = [];
  const logs = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const verbose = async () => {
    const res = await request(`${gw.url}/readyz?verbose`, 'GET');
    return { status: res.status, body: res.json as Verbose };
  };
  const serverUp = async (server: string) => {
    const text = await (await fetch(`${gw.metricsUrl}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`mcp_server_up{server="${server}"} `));
    return line === undefined ? undefined : Number(line.split(' ')[1]);
  };

  before(async () => {
    // Nothing listens on `closed`: the probe ejects its only replica without any client traffic.
    const closed = await freePort();
    upstream = await startDemoUpstream('healthy');
    gw = await startGateway(
      {
        servers: {
          api: { upstreams: [{ url: upstream.url }] },
          broken: { upstreams: [{ url: `http://127.0.0.1:${closed}/mcp` }], maxFails: 1, failTimeout: '1m', probe: { interval: '100ms', timeout: '1s' } },
          local: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }], maxProcesses: 1 },
        },
      },
      { logger: createLogger('info', logs) },
    );
  });
  after(async () => {
    await gw?.close();
    await upstream?.stop();
  });

  it('a server with every upstream down leaves the replica ready; the verbose view, the metric and the log name it', async () => {
    await until(async () => (await verbose()).body.servers.broken?.state === 'no_healthy_upstream', 'the broken server to be seen down');
    for (const path of ['/readyz', '/health']) {
      const res = await request(`${gw.url}${path}`, 'GET');
      assert.equal(res.status, 200, `${path}: ${res.text}`);
      assert.deepEqual(res.json, { status: 'ready' });
    }
    const view = await verbose();
    assert.equal(view.status, 200);
    assert.equal(view.body.status, 'ready');
    assert.deepEqual(view.body.servers.broken, { state: 'no_healthy_upstream', kind: 'http', replicas: 1, healthyReplicas: 0 });
    assert.deepEqual(view.body.servers.api, { state: 'up', kind: 'http', replicas: 1, healthyReplicas: 1 });
    assert.equal(view.body.servers.local?.state, 'up');
    assert.equal(await serverUp('broken'), 0);
    assert.equal(await serverUp('api'), 1);
    await until(() => lines.some((l) => l.msg === 'server down' && l.server === 'broken'), 'the "server down" line');
    assert.equal(lines.find((l) => l.msg === 'server down' && l.server === 'broken')?.state, 'no_healthy_upstream');
    assert.ok(!lines.some((l) => l.msg === 'server down' && l.server !== 'broken'), 'only the broken server is logged down');
  });

  it('the healthy server serves; the broken one still answers its fast 503', async () => {
    const sid = await openSession(`${gw.url}/mcp/api`);
    const echo = await post(`${gw.url}/mcp/api`, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'still here' } } }, sessionHeaders(sid));
    assert.equal(echo.status, 200, echo.text);
    assert.match(echo.text, /still here/);
    const started = Date.now();
    const refused = await post(`${gw.url}/mcp/broken`, INIT);
    assert.equal(refused.status, 503, refused.text);
    assert.equal(rpcOf(refused).error?.data?.code, 'MCPGW_ERR_NO_HEALTHY_UPSTREAM');
    assert.ok(Date.now() - started < 1_000, 'refused at once');
  });

  it('a stdio server at maxProcesses is at_capacity, not a reason to be unready; freed, it is up again', async () => {
    const url = `${gw.url}/mcp/local`;
    const sid = await openSession(url);
    const view = await verbose();
    assert.equal(view.status, 200);
    assert.equal(view.body.status, 'ready');
    assert.equal(view.body.servers.local?.state, 'at_capacity');
    assert.equal(await serverUp('local'), 0);
    await until(() => lines.some((l) => l.msg === 'server down' && l.server === 'local' && l.state === 'at_capacity'), 'the "server down" line of the stdio server');
    const full = await post(url, INIT);
    assert.equal(full.status, 503, full.text);
    assert.equal(rpcOf(full).error?.data?.code, 'MCPGW_ERR_CAPACITY');

    assert.equal((await request(url, 'DELETE', sessionHeaders(sid))).status, 200);
    await until(async () => (await verbose()).body.servers.local?.state === 'up', 'the stdio server up again');
    assert.equal(await serverUp('local'), 1);
    await until(() => lines.some((l) => l.msg === 'server up' && l.server === 'local'), 'the "server up" line', 3_000);
  });

  it('verbose=0 is the plain answer; the view never names an upstream URL', async () => {
    const plain = await request(`${gw.url}/readyz?verbose=0`, 'GET');
    assert.deepEqual(plain.json, { status: 'ready' });
    const text = (await request(`${gw.url}/readyz?verbose=1`, 'GET')).text;
    assert.ok(!text.includes('127.0.0.1'), text);
  });
});
