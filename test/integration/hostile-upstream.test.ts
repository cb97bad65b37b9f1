import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { initializeLegacy, LegacyStream, postMessage } from '../helpers/legacy.ts';
import { JSON_AND_SSE, openSession } from '../helpers/raw.ts';

/**
 * An upstream is as untrusted as a caller: what it can make the gateway hold (memory, time) is
 * bounded too. A hand-written Streamable HTTP server that answers initialize properly and then
 * misbehaves on tools/call: an SSE event that never ends, or a JSON answer that drips.
 */
describe('hostile upstream answers', () => {
  let upstream: Server;
  const open = new Set<ServerResponse>();
  let gw: Gateway;

  before(async () => {
    upstream = createServer((req, res) => {
      if (req.method !== 'POST') return void res.writeHead(405).end();
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const m = JSON.parse(body) as { id?: unknown; method: string; params?: { name?: string } };
        if (m.id === undefined) return void res.writeHead(202).end();
        if (m.method === 'initialize') {
          res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'hostile-1' });
          return void res.end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'hostile', version: '1' } } }));
        }
        open.add(res);
        res.once('close', () => open.delete(res));
        if (m.params?.name === 'stray_answers') {
          // Answers to ids nobody asked, then the real one.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: 'never-asked', result: { content: [{ type: 'text', text: 'stray' }] } })}\n\n`);
          res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: 12345, error: { code: -32603, message: 'stray error' } })}\n\n`);
          res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'the answer' }] } })}\n\n`);
          return;
        }
        if (m.params?.name === 'null_error') {
          // An error the upstream could not tie to a request (id null), then the real answer.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'null-id error' } })}\n\n`);
          res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'the answer' }] } })}\n\n`);
          return;
        }
        if (m.params?.name === 'endless_event') {
          // One SSE line that never ends: 1 MiB at a time, no newline.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: ');
          const mib = 'A'.repeat(1024 * 1024);
          const timer = setInterval(() => {
            if (!res.write(mib)) return;
          }, 5);
          res.once('close', () => clearInterval(timer));
          return;
        }
        // A JSON answer whose headers come at once and whose bytes drip, one every 200 ms.
        res.writeHead(200, { 'content-type': 'application/json' });
        const text = JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'x'.repeat(200) }] } });
        let i = 0;
        const timer = setInterval(() => (i < text.length ? res.write(text[i++]!) : res.end()), 200);
        res.once('close', () => clearInterval(timer));
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/mcp`;
    gw = await startGateway({
      servers: {
        hostile: { era: 'session', upstreams: [{ url }], timeout: { idle: '1s' } },
        // The default time limits (minutes): only the size limit can end the endless event in time.
        patient: { era: 'session', upstreams: [{ url }] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    for (const res of open) res.destroy();
    upstream?.closeAllConnections();
    await new Promise((r) => upstream?.close(r));
  });

  async function call(name: string, server = 'hostile'): Promise<{ status: number; text: string }> {
    const url = `${gw.url}/mcp/${server}`;
    const sid = await openSession(url);
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: JSON_AND_SSE, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: {} } }),
      // A hang is the failure: it shows as an abort here, not as a test timeout.
      signal: AbortSignal.timeout(20_000),
    });
    return { status: res.status, text: await res.text() };
  }

  it('an SSE event that never ends is cut at 16 MiB: the client gets a JSON-RPC error, the gateway holds no more', async () => {
    const rss = process.memoryUsage().rss;
    const res = await call('endless_event', 'patient');
    assert.match(res.text, /"id":7,"error"/, res.text.slice(0, 300));
    assert.match(res.text, /MCPGW_ERR_(STREAM_LOST|UPSTREAM_PROTOCOL)/);
    // Well under what an unbounded reader would have taken by the time it was noticed.
    assert.ok(process.memoryUsage().rss - rss < 400 * 1024 * 1024, `RSS grew by ${Math.round((process.memoryUsage().rss - rss) / 1024 / 1024)} MiB`);
  });

  it('answers to ids the client never sent are not relayed; the real answer is', async () => {
    const res = await call('stray_answers');
    assert.equal(res.status, 200, res.text);
    assert.doesNotMatch(res.text, /never-asked|stray error/, res.text);
    assert.match(res.text, /the answer/);
  });

  it('an error with id null is relayed (it answers no request), and the real answer follows', async () => {
    const res = await call('null_error');
    assert.equal(res.status, 200, res.text);
    assert.match(res.text, /null-id error/, res.text);
    assert.match(res.text, /the answer/);
  });

  it('on the 2024-11-05 door too, answers to ids the client never sent stay out of its session stream', async () => {
    const sseUrl = `${gw.url}/mcp/patient/sse`;
    const stream = await LegacyStream.open(sseUrl);
    try {
      await stream.until((events) => events.some((e) => e.event === 'endpoint'));
      const endpoint = stream.endpoint(sseUrl);
      await initializeLegacy(stream, endpoint);
      const res = await postMessage(endpoint, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'stray_answers', arguments: {} } });
      assert.equal(res.status, 202, res.text);
      await stream.until((events) => events.some((e) => e.message?.id === 7));
      const ids = stream.events.filter((e) => e.message && e.message.method === undefined).map((e) => e.message!.id);
      assert.ok(!ids.includes('never-asked') && !ids.includes(12345), `stray answers reached the client: ${JSON.stringify(ids)}`);
    } finally {
      stream.drop();
    }
  });

  it('a JSON answer that drips past the time limit gets the time-limit error, not an endless wait', async () => {
    const started = Date.now();
    const res = await call('drip');
    assert.equal(res.status, 504, res.text);
    assert.match(res.text, /MCPGW_ERR_UPSTREAM_TIMEOUT/);
    assert.ok(Date.now() - started < 10_000, `answered after ${Date.now() - started} ms`);
  });
});
