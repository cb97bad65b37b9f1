import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSession, post, request, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { postSse, readSse, slowCount } from '../helpers/sse.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const LIST = { jsonrpc: '2.0', id: 2, method: 'tools/list' };

describe('two gateway replicas sharing one Redis', () => {
  let redis: RedisServer;
  let upstream: HttpUpstreamProcess;
  let a: Gateway;
  let b: Gateway;
  before(async () => {
    [redis, upstream] = await Promise.all([startRedis(), startDemoUpstream('u')]);
    const doc = { redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } };
    [a, b] = await Promise.all([startGateway(doc), startGateway(doc)]);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await Promise.all([upstream?.stop(), redis?.stop()]);
  });

  it('serves a session initialized on A from B, and DELETE on A ends it on B', async () => {
    const sid = await openSession(`${a.url}/mcp/api`);
    const headers = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    const onB = await post(`${b.url}/mcp/api`, LIST, headers);
    assert.equal(onB.status, 200, onB.text);
    assert.ok((rpcOf(onB).result as { tools: unknown[] }).tools.length > 0);

    const del = await request(`${a.url}/mcp/api`, 'DELETE', headers);
    assert.equal(del.status, 200);
    for (const gw of [b, a]) {
      const after = await post(`${gw.url}/mcp/api`, LIST, headers);
      assert.equal(after.status, 404, after.text);
      assert.equal(rpcOf(after).error?.data?.code, 'MCPGW_ERR_SESSION_NOT_FOUND');
    }
  });

  it('a session initialized on A and ended on B is 404 on A (A asks Redis nothing of its own sessions, it hears the ending)', async () => {
    const sid = await openSession(`${a.url}/mcp/api`);
    const headers = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    assert.equal((await post(`${a.url}/mcp/api`, LIST, headers)).status, 200);
    assert.equal((await request(`${b.url}/mcp/api`, 'DELETE', headers)).status, 200);
    const after = await post(`${a.url}/mcp/api`, LIST, headers);
    assert.equal(after.status, 404, after.text);
  });

  it('a replica that never saw the session learns of its end from Redis', async () => {
    const sid = await openSession(`${a.url}/mcp/api`);
    const headers = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    await request(`${a.url}/mcp/api`, 'DELETE', headers);
    const c = await startGateway({ redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
    try {
      assert.equal((await post(`${c.url}/mcp/api`, LIST, headers)).status, 404);
    } finally {
      await c.close();
    }
  });

  it('an SDK client whose every request lands on another replica works end to end', async () => {
    let turn = 0;
    const replicas = [a.url, b.url];
    const alternating = (input: string | URL | Request, init?: RequestInit) => {
      const target = new URL(String(input instanceof Request ? input.url : input));
      const via = new URL(replicas[turn++ % 2]!);
      target.host = via.host;
      return fetch(target, init);
    };
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
    const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
    const client = new Client({ name: 'alternating', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${a.url}/mcp/api`), { fetch: alternating }));
    try {
      for (let i = 0; i < 4; i++) assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: `hop ${i}` } })), `hop ${i}`);
      const progress: number[] = [];
      await client.callTool({ name: 'slow_count', arguments: { count: 3, delayMs: 5 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
      assert.deepEqual(progress, [1, 2, 3]);
      assert.ok(turn >= 8, `requests alternated (${turn})`);
    } finally {
      await client.close();
    }
  });

  it('reports readiness with Redis reachable', async () => {
    const res = await request(`${a.url}/readyz`, 'GET');
    assert.equal(res.status, 200, res.text);
  });
});

describe('upstream replica failure', () => {
  let a: HttpUpstreamProcess;
  let b: HttpUpstreamProcess;
  let gw: Gateway;
  before(async () => {
    [a, b] = await Promise.all([startDemoUpstream('a'), startDemoUpstream('b')]);
    gw = await startGateway({ servers: { api: { upstreams: [{ url: a.url }, { url: b.url }], maxFails: 1, failTimeout: '30s' } } });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('ejects a killed replica, sends new sessions to the other, answers 404 for its sessions, never hangs', async () => {
    // Sessions on both replicas first; their open GET streams keep the load even, so they alternate.
    const clients = await Promise.all([0, 1, 2, 3].map(() => connectClient(`${gw.url}/mcp/api`)));
    const owners = await Promise.all(clients.map(async (c) => textOf(await c.client.callTool({ name: 'whoami', arguments: {} }))));
    assert.deepEqual(new Set(owners), new Set(['a', 'b']));
    const sidOnB = clients[owners.indexOf('b')]!.transport.sessionId!;

    await b.child.kill('SIGKILL');
    const started = Date.now();
    const names = [];
    for (let i = 0; i < 6; i++) {
      const { client, close } = await connectClient(`${gw.url}/mcp/api`);
      names.push(textOf(await client.callTool({ name: 'whoami', arguments: {} })));
      await close();
    }
    assert.deepEqual(new Set(names), new Set(['a']), 'every new session went to the live replica');
    assert.ok(Date.now() - started < 10_000, 'no hang');
    assert.ok(gw.servers.get('api')!.replicaStates().find((r) => r.key === b.url)!.ejected, 'b is ejected');

    const orphan = await post(`${gw.url}/mcp/api`, LIST, { 'mcp-session-id': sidOnB });
    assert.equal(orphan.status, 404, orphan.text);
    assert.equal(rpcOf(orphan).error?.data?.code, 'MCPGW_ERR_SESSION_NOT_FOUND');
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
  });

  it('answers 503 fast when every replica is down', async () => {
    await a.child.kill('SIGKILL');
    // The first attempt finds a dead (502) unless the gateway already noticed it through a broken stream (503).
    const first = await post(`${gw.url}/mcp/api`, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
    assert.ok([502, 503].includes(first.status), first.text);
    const started = Date.now();
    const next = await post(`${gw.url}/mcp/api`, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
    assert.equal(next.status, 503, next.text);
    assert.equal(rpcOf(next).error?.data?.code, 'MCPGW_ERR_NO_HEALTHY_UPSTREAM');
    assert.ok(Date.now() - started < 1_000);
    // The gateway replica stays ready (other servers may be fine); the per-server view names it.
    const ready = await request(`${gw.url}/readyz?verbose`, 'GET');
    assert.equal(ready.status, 200, ready.text);
    assert.equal((ready.json as { servers: Record<string, { state: string }> }).servers.api?.state, 'no_healthy_upstream');
  });
});

describe('active health probe', () => {
  let a: HttpUpstreamProcess;
  let b: HttpUpstreamProcess;
  let gw: Gateway;
  before(async () => {
    [a, b] = await Promise.all([startDemoUpstream('a'), startDemoUpstream('b')]);
    gw = await startGateway({
      servers: { api: { upstreams: [{ url: a.url }, { url: b.url }], maxFails: 1, failTimeout: '1m', probe: { interval: '150ms', timeout: '1s' } } },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  const stateOf = (key: string) => gw.servers.get('api')!.replicaStates().find((r) => r.key === key)!;
  async function until(cond: () => boolean, ms = 5_000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && !cond()) await new Promise((r) => setTimeout(r, 50));
    return cond();
  }

  it('ejects a dead replica with no client traffic, and restores it when it answers again (before failTimeout)', async () => {
    assert.equal(stateOf(b.url).ejected, false);
    const port = b.port;
    await b.child.kill('SIGKILL');
    assert.ok(await until(() => stateOf(b.url).ejected), 'the probe found b dead');
    b = await startDemoUpstream('b', port);
    assert.ok(await until(() => !stateOf(b.url).ejected), 'the probe brought b back long before the 1 min failTimeout');
    const names = new Set<string>();
    for (let i = 0; i < 8 && names.size < 2; i++) {
      const { client, close } = await connectClient(`${gw.url}/mcp/api`);
      names.add(textOf(await client.callTool({ name: 'whoami', arguments: {} })));
      await close();
    }
    assert.deepEqual(names, new Set(['a', 'b']));
  });
});

describe('upstream connections', () => {
  let up: HttpUpstreamProcess;
  let gw: Gateway;
  before(async () => {
    up = await startDemoUpstream('u');
    // A cap of 2 request connections, and more standalone streams than that held open.
    gw = await startGateway({ servers: { api: { upstreams: [{ url: up.url, connections: 2 }] } } });
  });
  after(async () => {
    await gw?.close();
    await up?.stop();
  });

  it('open GET streams never starve requests, whatever the connection cap', { timeout: 20_000 }, async () => {
    const url = `${gw.url}/mcp/api`;
    const streams: AbortController[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const sid = await openSession(url);
        const abort = new AbortController();
        const res = await fetch(url, { headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, signal: abort.signal });
        assert.equal(res.status, 200);
        streams.push(abort);
      }
      const sid = await openSession(url);
      const started = Date.now();
      const echo = await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'not starved' } } }, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });
      assert.match(JSON.stringify(rpcOf(echo)), /not starved/);
      assert.ok(Date.now() - started < 5_000);
    } finally {
      for (const a of streams) a.abort();
    }
  });

  it('under a cap, a replica that hangs is still ejected, and requests that gave up waiting never reach it', { timeout: 20_000 }, async () => {
    // Answers initialize; a call to `hold` gets SSE headers and a stream that stays open; any
    // other call hangs without headers.
    let hangs = 0;
    let sockets = 0;
    const held = new Set<ServerResponse>();
    const upstream = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const m = JSON.parse(body || '{}') as { id?: unknown; method?: string; params?: { name?: string } };
        if (m.method === 'initialize') {
          const result = { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'hung', version: '1' } };
          return void res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'u1' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
        }
        if (m.id === undefined) return void res.writeHead(202).end();
        if (m.params?.name === 'hold') {
          res.writeHead(200, { 'content-type': 'text/event-stream' }).flushHeaders();
          return void held.add(res);
        }
        if (m.method === 'tools/call') hangs++;
      });
    });
    upstream.on('connection', () => sockets++);
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`;
    const capped = await startGateway({ servers: { api: { upstreams: [{ url: upstreamUrl, connections: 1 }], requestTimeout: '300ms', maxFails: 2 } } });
    try {
      const url = `${capped.url}/mcp/api`;
      const headers = sessionHeaders(await openSession(url));
      const call = (id: number, name = 'x') => post(url, { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } }, headers);
      // A stream holds the only slot; three calls wait for it, give up, and are never sent.
      const hold = await postSse(url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hold', arguments: {} } }, headers);
      assert.equal(hold.res.status, 200);
      const socketsBefore = sockets;
      for (const r of await Promise.all([2, 3, 4].map((id) => call(id)))) assert.equal(r.status, 504, r.text);
      assert.equal(hangs, 0, 'the requests that gave up waiting were never sent');
      assert.equal(sockets, socketsBefore, 'no connection was opened for them either');
      // The stream ends: its slot is free again. A call that hangs counts against the replica;
      // the second ejects it (maxFails 2), and the next call finds no replica.
      for (const r of held) r.end();
      hold.abort.abort();
      assert.equal((await call(5)).status, 504);
      assert.equal((await call(6)).status, 504);
      assert.equal(hangs, 2);
      const after = await call(7);
      assert.equal(after.status, 503, after.text);
    } finally {
      await capped.close();
      upstream.closeAllConnections();
      await new Promise((r) => upstream.close(r));
    }
  });

  it('a request waiting for a capped connection gets a 504 after requestTimeout, and the replica is not blamed', { timeout: 20_000 }, async () => {
    const capped = await startGateway({ servers: { api: { upstreams: [{ url: up.url, connections: 1 }], requestTimeout: '500ms' } } });
    try {
      const url = `${capped.url}/mcp/api`;
      const headers = sessionHeaders(await openSession(url));
      // The only request connection carries a ~3 s SSE answer.
      const slow = await postSse(url, slowCount(1, 20, 150), headers);
      const slowDone = readSse(slow.res, (e) => e.message?.id === 1);
      const started = Date.now();
      // Three at once: as many as maxFails, so blaming the replica would eject it.
      const waited = await Promise.all([2, 3, 4].map((id) => post(url, { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text: 'queued' } } }, headers)));
      for (const w of waited) {
        assert.equal(w.status, 504, w.text);
        assert.equal(rpcOf(w).error?.data?.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
      }
      assert.ok(Date.now() - started < 2_500, `answered after the limit, not after the slow call (${Date.now() - started} ms)`);
      assert.equal((await slowDone).filter((e) => e.message?.id === 1).length, 1, 'the slow call still finished');
      const echo = await post(url, { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'echo', arguments: { text: 'free again' } } }, headers);
      assert.match(JSON.stringify(rpcOf(echo)), /free again/);
    } finally {
      await capped.close();
    }
  });
});
