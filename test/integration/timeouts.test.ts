import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { statelessPost } from '../helpers/era.ts';
import { until } from '../helpers/streams.ts';
import { DEMO_SERVER, startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const slowCount = (id: number, args: Record<string, unknown>, meta?: Record<string, unknown>) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name: 'slow_count', arguments: args, ...(meta ? { _meta: meta } : {}) },
});

describe('request time limits (demo upstream, SSE answers)', () => {
  let demo: HttpUpstreamProcess;
  let gw: Gateway;
  let sid: string;
  const stats = async (url: string) => {
    const res = await post(url, { jsonrpc: '2.0', id: 99, method: 'tools/call', params: { name: 'stats', arguments: {} } }, sessionHeaders(sid));
    return JSON.parse(textOf(rpcOf(res).result)) as { cancelled: number };
  };
  before(async () => {
    demo = await startDemoUpstream('t');
    gw = await startGateway({
      servers: {
        api: { upstreams: [{ url: demo.url }], timeout: { idle: '1s', max: '20s' } },
        capped: { upstreams: [{ url: demo.url }], timeout: { idle: '20s', max: '1s' } },
      },
    });
    sid = await openSession(`${gw.url}/mcp/api`);
  });
  after(async () => {
    await gw?.close();
    await demo?.stop();
  });

  it('a slow tool that reports progress outlives the idle limit', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/api`);
    try {
      const progress: number[] = [];
      const started = Date.now();
      const result = await client.callTool({ name: 'slow_count', arguments: { count: 8, delayMs: 300 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
      assert.equal(textOf(result), 'counted to 8');
      assert.ok(Date.now() - started > 2_000, 'it ran well past the 1 s idle limit');
      assert.equal(progress.length, 8);
    } finally {
      await close();
    }
  });

  it('one without progress is cancelled upstream and answered with a JSON-RPC error on its stream', async () => {
    const url = `${gw.url}/mcp/api`;
    const before = (await stats(url)).cancelled;
    const started = Date.now();
    const res = await post(url, slowCount(5, { count: 40, delayMs: 100 }), sessionHeaders(sid));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const msg = rpcOf(res);
    assert.equal(msg.id, 5);
    assert.equal(msg.error?.data?.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    assert.match(msg.error!.message, /server "api": no progress for 1000 ms/);
    assert.ok(Date.now() - started < 3_000, 'cut at the idle limit, not after the 4 s the tool needs');
    await until(async () => (await stats(url)).cancelled > before, 'the upstream to see notifications/cancelled');
    assert.equal(gw.pipeline.pending, 0);
  });

  it('the hard maximum ends a call even while it reports progress', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/capped`);
    try {
      const progress: number[] = [];
      await assert.rejects(
        client.callTool({ name: 'slow_count', arguments: { count: 40, delayMs: 100 } }, undefined, { onprogress: (p) => progress.push(p.progress) }),
        /over the 1000 ms maximum/,
      );
      assert.ok(progress.length >= 2 && progress.length < 20, `progress came (${progress.length}) and did not save it`);
    } finally {
      await close();
    }
  });

  it("forwards the client's own cancellation, and stops timing the request", async () => {
    const url = `${gw.url}/mcp/api`;
    const before = (await stats(url)).cancelled;
    const pending = post(url, slowCount(7, { count: 40, delayMs: 50 }, { progressToken: 'p7' }), sessionHeaders(sid));
    await until(() => gw.pipeline.pending > 0, 'the call to be in flight');
    await new Promise((r) => setTimeout(r, 120));
    const cancel = await post(url, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 7, reason: 'user' } }, sessionHeaders(sid));
    assert.equal(cancel.status, 202);
    assert.equal(gw.pipeline.pending, 0, 'no gateway time limit runs on for it');
    await until(async () => (await stats(url)).cancelled > before, 'the upstream to stop the tool');
    // The SDK upstream answers a cancelled request with nothing; its stream just ends.
    await pending.catch(() => undefined);
  });
});

describe('request time limits (JSON answers)', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  before(async () => {
    up = await startScriptedUpstream();
    gw = await startGateway({ servers: { api: { upstreams: [{ url: up.url }], timeout: { idle: '300ms' } } } });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  it('a request with no answer in time gets a 504 JSON-RPC error, and the upstream a cancellation', async () => {
    const url = `${gw.url}/mcp/api`;
    const sid = await openSession(url);
    const started = Date.now();
    const res = await post(url, { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'slow', arguments: { delayMs: 1_500 } } }, sessionHeaders(sid));
    assert.equal(res.status, 504, res.text);
    assert.deepEqual(rpcOf(res).id, 4);
    assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    assert.ok(Date.now() - started < 1_200);
    await until(() => up.attempts('notifications/cancelled') === 1, 'notifications/cancelled upstream');
  });
});

describe('request time limits: 2026-07-28 clients of a session-era HTTP upstream', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  before(async () => {
    up = await startScriptedUpstream();
    // One connection for requests: a call that timed out must give it back at once, not when its
    // upstream finally answers (or at requestTimeout).
    const server = { upstreams: [{ url: up.url, connections: 1 }], era: 'session', timeout: { idle: '500ms' }, requestTimeout: '20s' };
    // Two servers, two pools: each test has its own connection. On `gated`, `slow` may take 3 s.
    gw = await startGateway({ servers: { api: server, gated: { ...server, tools: { slow: { timeout: { idle: '3s' } } } } } });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  it("a call that times out before its answer's headers lets go of its upstream request and its connection", async () => {
    const url = `${gw.url}/mcp/api`;
    const started = Date.now();
    const slow = await statelessPost(url, 'tools/call', { name: 'slow', arguments: { delayMs: 10_000 } }, { id: 1 });
    assert.equal(slow.status, 504, slow.text);
    assert.equal(rpcOf(slow).error?.data?.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    assert.ok(Date.now() - started < 2_000);
    // The next call gets the connection: before, it waited behind the abandoned one and timed out too.
    const next = await statelessPost(url, 'tools/call', { name: 'lookup', arguments: {} }, { id: 2 });
    assert.equal(next.status, 200, next.text);
    assert.equal(up.done('tools/call lookup'), 1);
  });

  it('a call given up while it waits for the connection is never sent', async () => {
    const url = `${gw.url}/mcp/gated`;
    const before = up.attempts('tools/call put');
    // The first holds the connection until its upstream answers (1.5 s, within its 3 s); the
    // second waits in the gate behind it and gives up at its own limit (500 ms).
    const [first, second] = await Promise.all([
      statelessPost(url, 'tools/call', { name: 'slow', arguments: { delayMs: 1_500 } }, { id: 3 }),
      new Promise<Awaited<ReturnType<typeof statelessPost>>>((resolve) => setTimeout(() => resolve(statelessPost(url, 'tools/call', { name: 'put', arguments: {} }, { id: 4 })), 100)),
    ]);
    assert.equal(first.status, 200, first.text);
    assert.equal(second.status, 504, second.text);
    // Past the moment the slow call's upstream answered: before, the gate then sent the abandoned call.
    await new Promise((r) => setTimeout(r, 2_000));
    assert.equal(up.attempts('tools/call put'), before, 'the abandoned call never reached the upstream');
  });
});

describe('request time limits: batches (2025-03-26, stdio upstream)', () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ servers: { local: { upstreams: [{ command: process.execPath, args: [DEMO_SERVER] }], timeout: { idle: '1s', max: '20s' } } } });
  });
  after(async () => {
    await gw?.close();
  });

  it('a batch gets the time limit too: an array with the error for each of its requests, under their ids', async () => {
    const url = `${gw.url}/mcp/local`;
    const sid = await openSession(url);
    const started = Date.now();
    const res = await post(url, [slowCount(5, { count: 60, delayMs: 100 })], { ...sessionHeaders(sid), 'mcp-protocol-version': '2025-03-26' });
    assert.equal(res.status, 200, res.text);
    const answers = JSON.parse(res.text) as { id: unknown; error?: { data?: { code?: string } } }[];
    assert.ok(Array.isArray(answers), res.text);
    assert.deepEqual(
      answers.map((a) => [a.id, a.error?.data?.code]),
      [[5, 'MCPGW_ERR_UPSTREAM_TIMEOUT']],
    );
    assert.ok(Date.now() - started < 4_000, `answered after ${Date.now() - started} ms, not at the 1 s idle limit`);
  });
});

describe('request time limits: a batch whose JSON answer stalls after its headers', () => {
  let upstream: Server;
  let gw: Gateway;
  before(async () => {
    // Answers initialize, then every batch with JSON headers and a body that never comes.
    upstream = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => {
        const msg = JSON.parse(body || 'null') as { method?: string; id?: number } | { method?: string }[] | null;
        if (Array.isArray(msg)) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('[');
          return;
        }
        if (msg?.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'stall-1' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id: (msg as { id?: number }).id, result: { protocolVersion: '2025-03-26', capabilities: { tools: {} }, serverInfo: { name: 'stall', version: '1' } } }));
          return;
        }
        res.writeHead(202).end();
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    gw = await startGateway({ servers: { stall: { upstreams: [{ url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp` }], era: 'session', timeout: { idle: '500ms' } } } });
  });
  after(async () => {
    await gw?.close();
    upstream?.closeAllConnections();
    await new Promise((r) => upstream?.close(r));
  });

  it('each of its requests gets the error under its own id, as before the headers', async () => {
    const url = `${gw.url}/mcp/stall`;
    const sid = await openSession(url, '2025-03-26');
    const call = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'anything', arguments: {} } });
    const res = await post(url, [call(5), call(6)], sessionHeaders(sid, '2025-03-26'));
    assert.equal(res.status, 200, res.text);
    const answers = JSON.parse(res.text) as { id: unknown; error?: { data?: { code?: string } } }[];
    assert.ok(Array.isArray(answers), res.text);
    assert.deepEqual(
      answers.map((a) => [a.id, a.error?.data?.code]),
      [
        [5, 'MCPGW_ERR_UPSTREAM_TIMEOUT'],
        [6, 'MCPGW_ERR_UPSTREAM_TIMEOUT'],
      ],
    );
  });
});
