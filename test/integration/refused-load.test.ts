import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { statelessPost } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { listenUpstream, readBody, type HandUpstream } from '../helpers/hand-upstream.ts';

/**
 * A Streamable HTTP upstream of either era that turns the first `refuse` POSTs of `method` (of
 * any method without one) away with `status` and a small JSON body (as a proxy in front of it
 * may send), then answers every request with a result (initialize with a session).
 */
async function startRefusingUpstream(refuse: number, status = 503, method?: string): Promise<HandUpstream> {
  let refused = 0;
  return listenUpstream((req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(req.method === 'DELETE' ? 200 : 405, { allow: 'POST' }).end();
      return;
    }
    void readBody(req).then((text) => {
      const msg = JSON.parse(text) as { id?: unknown; method: string; params?: { protocolVersion?: string } };
      if (refused < refuse && (method === undefined || msg.method === method)) {
        refused++;
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': 2 }).end('{}');
        return;
      }
      if (msg.id === undefined) {
        res.writeHead(202).end();
        return;
      }
      const result = msg.method === 'initialize' ? { protocolVersion: msg.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'refusing', version: '1' } } : { content: [{ type: 'text', text: 'done' }] };
      const body = JSON.stringify({ jsonrpc: '2.0', id: msg.id, result });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'mcp-session-id': 'upstream-session' }).end(body);
    });
  });
}

/** mcp_upstream_inflight of `server`'s one replica. */
async function inflight(gw: Gateway, server: string): Promise<number> {
  const text = await (await fetch(`${gw.metricsUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`mcp_upstream_inflight{server="${server}"`));
  assert.ok(line, `no mcp_upstream_inflight for ${server}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Until the replica's load has settled back to `want` (the refused answer's body drained), or the time is up. */
async function settledInflight(gw: Gateway, server: string, want: number): Promise<number> {
  let n = await inflight(gw, server);
  for (let i = 0; i < 40 && n !== want; i++) {
    await new Promise((r) => setTimeout(r, 50));
    n = await inflight(gw, server);
  }
  return n;
}

describe('a replica that turned a request away (503, 404) carries no load for it afterwards', () => {
  let stateless: HandUpstream;
  let session: HandUpstream;
  let ended: HandUpstream;
  let gw: Gateway;
  before(async () => {
    [stateless, session, ended] = await Promise.all([startRefusingUpstream(1), startRefusingUpstream(1), startRefusingUpstream(1, 404, 'tools/call')]);
    gw = await startGateway({
      servers: {
        // maxFails 0: the refusal does not eject the one replica, so the next request goes to it.
        st: { upstreams: [{ url: stateless.url }], era: 'stateless', maxFails: 0, retry: { attempts: 1 } },
        se: { upstreams: [{ url: session.url }], era: 'session', maxFails: 0 },
        gone: { upstreams: [{ url: ended.url }], era: 'session', maxFails: 0 },
      },
    });
  });
  after(async () => {
    await gw?.close();
    for (const u of [stateless, session, ended]) {
      await u?.close();
    }
  });

  it('2026-07-28: a call the stateless upstream refused, then one it ran', async () => {
    const refused = await statelessPost(`${gw.url}/mcp/st`, 'tools/call', { name: 'work', arguments: {} });
    assert.equal(refused.status, 502);
    const ran = await statelessPost(`${gw.url}/mcp/st`, 'tools/call', { name: 'work', arguments: {} }, { id: 2 });
    assert.equal(ran.status, 200);
    assert.equal(await settledInflight(gw, 'st', 0), 0, 'mcp_upstream_inflight is back to 0');
  });

  it('a session initialize the upstream refused, then one it took', async () => {
    const init = (id: number) =>
      fetch(`${gw.url}/mcp/se`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'refused-load', version: '1' } } }),
      });
    const refused = await init(1);
    await refused.text();
    assert.equal(refused.status, 502);
    const taken = await init(2);
    await taken.text();
    assert.equal(taken.status, 200);
    assert.equal(await settledInflight(gw, 'se', 0), 0, 'mcp_upstream_inflight is back to 0');
  });

  it('a session call answered 404 (the upstream ended the session)', async () => {
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };
    const init = await fetch(`${gw.url}/mcp/gone`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'refused-load', version: '1' } } }),
    });
    await init.text();
    const sid = init.headers.get('mcp-session-id')!;
    const call = await fetch(`${gw.url}/mcp/gone`, { method: 'POST', headers: { ...headers, 'mcp-session-id': sid }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'work', arguments: {} } }) });
    await call.text();
    assert.equal(call.status, 404);
    assert.equal(await settledInflight(gw, 'gone', 0), 0, 'mcp_upstream_inflight is back to 0');
  });
});
