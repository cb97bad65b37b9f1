import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { connectClient } from '../helpers/client.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { openSession, post, sessionHeaders } from '../helpers/raw.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/** Log lines as the gateway writes them (JSON, one per line). */
function capture(): { stream: Writable; lines: Record<string, unknown>[]; raw: string[] } {
  const raw: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) {
        if (!l) continue;
        raw.push(l);
        lines.push(JSON.parse(l) as Record<string, unknown>);
      }
      done();
    },
  });
  return { stream, lines, raw };
}

describe('logs: JSON lines with request id, server and method; secrets redacted', () => {
  let up: HttpUpstreamProcess;
  let gw: Gateway;
  const log = capture();
  const TOKEN = 'Bearer very-secret-token-value';

  before(async () => {
    up = await startDemoUpstream('logs');
    const dead = `http://127.0.0.1:${await freePort()}/mcp`;
    gw = await startGateway(
      { servers: { demo: { upstreams: [{ url: up.url }] }, dead: { upstreams: [{ url: dead }] } } },
      { logger: createLogger('debug', log.stream) },
    );
  });
  after(async () => {
    await gw?.close();
    await up?.stop();
  });

  it('writes one debug line per request, carrying the request fields', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/demo`, { headers: { authorization: TOKEN, 'x-request-id': 'trace-me-42' } });
    await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
    await close();
    await new Promise((r) => setTimeout(r, 50));
    const requests = log.lines.filter((l) => l.msg === 'request');
    const call = requests.find((l) => l.method === 'tools/call');
    assert.ok(call, 'a tools/call request line');
    assert.equal(call.level, 20);
    assert.equal(call.reqId, 'trace-me-42');
    assert.equal(call.server, 'demo');
    assert.equal(call.tool, 'echo');
    assert.equal(call.status, 200);
    assert.equal(typeof call.ms, 'number');
    assert.ok(requests.some((l) => l.method === 'initialize'));
  });

  it('a request id that does not look like one is not taken; a tool name is cut in the log line', async () => {
    const url = `${gw.url}/mcp/demo`;
    const sid = await openSession(url);
    const ids = ['x'.repeat(5_000), 'a b', 'a"b', 'ok-but-then\u00e9'];
    for (const [i, id] of ids.entries()) {
      const res = await post(url, { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: `${'t'.repeat(100_000)}${i}`, arguments: {} } }, { ...sessionHeaders(sid), 'x-request-id': id });
      assert.equal(res.status, 200, res.text.slice(0, 200));
    }
    await new Promise((r) => setTimeout(r, 50));
    const lines = log.lines.filter((l) => l.msg === 'request' && String(l.tool).startsWith('ttt'));
    assert.equal(lines.length, ids.length);
    for (const l of lines) {
      assert.ok(!ids.includes(String(l.reqId)), `reqId taken from the header: ${String(l.reqId).slice(0, 40)}`);
      assert.match(String(l.reqId), /^req-/);
      assert.match(String(l.tool), /^t{256}…\[100001 characters\]$/);
    }
    assert.ok(log.raw.every((l) => l.length < 10_000), 'a log line as long as the caller wanted');
  });

  it('warns on an upstream failure with the request fields', async () => {
    const res = await fetch(`${gw.url}/mcp/dead`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: TOKEN },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
    });
    assert.ok(res.status >= 500);
    const warn = log.lines.find((l) => l.msg === 'upstream failure' && l.server === 'dead');
    assert.ok(warn, 'an upstream failure line');
    assert.equal(warn.level, 40);
    assert.equal(warn.method, 'initialize');
    assert.equal(typeof warn.reqId, 'string');
    assert.match(String(warn.code), /^MCPGW_ERR_/);
  });

  it('a client that leaves in the middle of its body is no error', async () => {
    const { connect } = await import('node:net');
    const { port } = new URL(gw.url);
    const before = log.lines.length;
    await new Promise<void>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write('POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{"jsonrpc":"2.0",');
        setTimeout(() => socket.destroy(), 100);
      });
      socket.once('close', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 200));
    const errors = log.lines.slice(before).filter((l) => (l.level as number) >= 50);
    assert.deepEqual(errors, [], 'no error line');
    assert.ok(log.lines.slice(before).some((l) => l.msg === 'client left before its request body was read'));
  });

  it('redacts credentials wherever they appear', () => {
    const out = capture();
    const logger = createLogger('info', out.stream);
    logger.info({ req: { headers: { authorization: TOKEN, 'mcp-session-id': 'sealed' } }, token: 't0ken', upstream: { password: 'pw', headers: { authorization: TOKEN } } }, 'x');
    const line = out.raw.join('\n');
    for (const secret of ['very-secret-token-value', 'sealed', 't0ken', '"pw"']) assert.ok(!line.includes(secret), `${secret} leaked: ${line}`);
    assert.ok(!log.raw.join('\n').includes('very-secret-token-value'), 'the gateway log never carries the token');
  });
});
