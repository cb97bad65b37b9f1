import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { listenUpstream, readBody, type HandUpstream } from '../helpers/hand-upstream.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';

/**
 * A session-era upstream that answers tools/call `empty` with `200` and no body at all
 * (content-length: 0): no JSON-RPC answer, which a request must get (JSON or an SSE stream).
 */
async function startEmptyAnswering(): Promise<HandUpstream> {
  return listenUpstream((req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(req.method === 'DELETE' ? 200 : 405, { allow: 'POST' }).end();
      return;
    }
    void readBody(req).then((text) => {
      const msg = JSON.parse(text) as { id?: unknown; method: string; params?: { name?: string; protocolVersion?: string } };
      if (msg.id === undefined) {
        res.writeHead(202).end();
        return;
      }
      if (msg.method === 'tools/call' && msg.params?.name === 'empty') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': 0 }).end();
        return;
      }
      const result = msg.method === 'initialize' ? { protocolVersion: msg.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'empty', version: '1' } } : { content: [{ type: 'text', text: 'done' }] };
      const body = JSON.stringify({ jsonrpc: '2.0', id: msg.id, result });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'mcp-session-id': 'upstream-session' }).end(body);
    });
  });
}

describe('a request the upstream answers 200 with no body', () => {
  let upstream: HandUpstream;
  let gw: Gateway;
  before(async () => {
    upstream = await startEmptyAnswering();
    gw = await startGateway({ servers: { e: { upstreams: [{ url: upstream.url }], era: 'session' } } });
  });
  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it('is an upstream protocol error for the client and in the metrics, as on the 2026-07-28 door, not an empty success', async () => {
    const url = `${gw.url}/mcp/e`;
    const sid = await openSession(url);
    const res = await post(url, { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'empty', arguments: {} } }, sessionHeaders(sid));
    assert.equal(res.status, 502, `got ${res.status} ${JSON.stringify(res.text)}`);
    assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_UPSTREAM_PROTOCOL');
    const metrics = await (await fetch(`${gw.metricsUrl}/metrics`)).text();
    assert.match(metrics, /mcp_errors_total\{error_type="MCPGW_ERR_UPSTREAM_PROTOCOL",method="tools\/call"\} 1/);
  });
});
