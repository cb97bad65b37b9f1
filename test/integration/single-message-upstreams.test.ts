import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSession, request, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { metricValue, until } from '../helpers/streams.ts';
import { DEMO_SERVER, startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/**
 * Upstreams that take one message at a time — stdio children (one per line) and 2024-11-05 SSE
 * servers (one per POST) — get a batch as single messages and a pretty-printed body on one line;
 * and a stdio child that never answers its initialize does not hold a process slot.
 */
describe('single-message upstreams: batches, line breaks, a silent child', () => {
  let legacy: HttpUpstreamProcess;
  let gw: Gateway;
  before(async () => {
    legacy = await startDemoUpstream('s', 0, { transport: 'sse' });
    gw = await startGateway({
      servers: {
        stdio: { upstreams: [{ command: process.execPath, args: [DEMO_SERVER] }] },
        old: { upstreams: [{ url: legacy.url, transport: 'sse' }] },
        // Reads stdin and never answers.
        silent: { upstreams: [{ command: process.execPath, args: ['-e', 'process.stdin.resume()'] }], requestTimeout: '500ms', maxProcesses: 1 },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await legacy?.stop();
  });

  for (const server of ['stdio', 'old']) {
    it(`${server}: a 2025-03-26 batch is answered in full, a pretty-printed request too`, async () => {
      const url = `${gw.url}/mcp/${server}`;
      const headers = { ...sessionHeaders(await openSession(url, '2025-03-26'), '2025-03-26'), 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
      const batch = JSON.stringify([
        { jsonrpc: '2.0', id: 3, method: 'ping' },
        { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'echo', arguments: { text: 'in a batch' } } },
        { jsonrpc: '2.0', method: 'notifications/roots/list_changed' },
      ]);
      const res = await request(url, 'POST', headers, batch);
      assert.equal(res.status, 200, res.text);
      const answers = res.text
        .split('\n')
        .filter((l) => l.startsWith('data: ') && l.length > 6)
        .map((l) => JSON.parse(l.slice(6)) as { id?: unknown; result?: unknown });
      assert.deepEqual(answers.map((a) => a.id).sort(), [3, 4]);
      assert.match(JSON.stringify(answers.find((a) => a.id === 4)), /in a batch/);

      const pretty = JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'echo', arguments: { text: 'on many lines' } } }, null, 2);
      const one = await request(url, 'POST', headers, pretty);
      assert.equal(one.status, 200, one.text);
      assert.match(JSON.stringify(rpcOf(one)), /on many lines/);
    });
  }

  it('a stdio child that never answers initialize is ended after requestTimeout, and its slot is free again', async () => {
    const url = `${gw.url}/mcp/silent`;
    for (let i = 0; i < 2; i++) {
      const started = Date.now();
      const res = await request(url, 'POST', { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }));
      assert.equal(res.status, 504, res.text);
      assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT', 'not MCPGW_ERR_CAPACITY: the earlier child was ended');
      assert.ok(Date.now() - started < 5_000);
      assert.equal(res.headers.get('mcp-session-id'), null, 'no session for an initialize that failed');
      // The child is ended (SIGTERM), and its slot frees when it has exited.
      await until(async () => (await metricValue(gw, 'mcp_stdio_processes', { server: 'silent' })) === 0, 'the silent child to exit');
    }
  });
});
