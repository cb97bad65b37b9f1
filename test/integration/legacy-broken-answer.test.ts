import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { listenUpstream, readBody, type HandUpstream } from '../helpers/hand-upstream.ts';
import { initializeLegacy, LegacyStream, postMessage } from '../helpers/legacy.ts';

/**
 * A Streamable HTTP upstream whose JSON answer to tools/call `broken` breaks off: it promises 20
 * bytes more than it sends (content-length), then drops the connection. Everything else is a
 * plain JSON answer.
 */
async function startBreakingUpstream(): Promise<HandUpstream> {
  return listenUpstream((req, res) => {
    // No standalone stream, and a session that ends (DELETE) needs nothing done.
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
      const result = msg.method === 'initialize' ? { protocolVersion: msg.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'breaking', version: '1' } } : { content: [{ type: 'text', text: 'whole' }] };
      const body = JSON.stringify({ jsonrpc: '2.0', id: msg.id, result });
      const headers = { 'content-type': 'application/json', 'mcp-session-id': 'upstream-session' };
      if (msg.method === 'tools/call' && msg.params?.name === 'broken') {
        res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(body) + 20 });
        res.write(body);
        setTimeout(() => res.socket?.destroy(), 50);
        return;
      }
      res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(body) }).end(body);
    });
  });
}

describe('2024-11-05 HTTP+SSE: a JSON answer the upstream breaks off', () => {
  let upstream: HandUpstream;
  let gw: Gateway;
  before(async () => {
    upstream = await startBreakingUpstream();
    gw = await startGateway({ servers: { h: { upstreams: [{ url: upstream.url }], era: 'session' } } });
  });
  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it('is answered on the session stream as a lost stream (the POST 202), not as an internal error of the POST', async () => {
    const stream = await LegacyStream.open(`${gw.url}/mcp/h/sse`);
    await stream.until((events) => events.length > 0);
    const endpoint = stream.endpoint(`${gw.url}/mcp/h/sse`);
    await initializeLegacy(stream, endpoint);
    const post = await postMessage(endpoint, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'broken', arguments: {} } });
    assert.equal(post.status, 202, `the POST is accepted; its answer goes on the stream (got ${post.status} ${post.text})`);
    const events = await stream.until((all) => all.some((e) => e.message?.id === 7));
    const answer = events.find((e) => e.message?.id === 7)!.message!;
    assert.equal(answer.error?.data?.code, 'MCPGW_ERR_STREAM_LOST');
    // The session goes on: the next call is answered.
    assert.equal((await postMessage(endpoint, { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'whole', arguments: {} } })).status, 202);
    await stream.until((all) => all.some((e) => e.message?.id === 8 && e.message.result !== undefined));
    stream.drop();
  });
});
