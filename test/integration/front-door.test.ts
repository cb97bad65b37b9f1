import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { INIT, openSession, post, request, rpcOf, type RawResponse } from '../helpers/raw.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';
import { demoServerPath } from '../../src/config/load.ts';

const LIST = { jsonrpc: '2.0', id: 2, method: 'tools/list' };

function assertError(res: RawResponse, status: number, rpc: number, code: string): void {
  assert.equal(res.status, status, `status; body: ${res.text}`);
  const body = res.json as { jsonrpc: string; error: { code: number; data: { code: string } } };
  assert.equal(body?.jsonrpc, '2.0', `JSON-RPC error body; got: ${res.text}`);
  assert.equal(body.error.code, rpc);
  assert.equal(body.error.data.code, code);
}

for (const kind of ['http', 'stdio'] as const) {
  describe(`front door rules (${kind} upstream)`, () => {
    let upstream: HttpUpstreamProcess | undefined;
    let gw: Gateway;
    let url: string;
    let sid: string;
    before(async () => {
      const upstreams = kind === 'http' ? [{ url: (upstream = await startDemoUpstream('a')).url }] : [{ command: process.execPath, args: [demoServerPath()] }];
      gw = await startGateway({
        listen: { host: '127.0.0.1', port: 0, bodyLimit: 4096, allowedOrigins: ['https://app.example.com'] },
        servers: { api: { upstreams }, other: { upstreams } },
      });
      url = `${gw.url}/mcp/api`;
      sid = await openSession(url);
    });
    after(async () => {
      await gw?.close();
      await upstream?.stop();
    });

    const withSession = () => ({ 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });

    const table: [string, () => Promise<RawResponse>, number, number, string][] = [
      ['unknown server', () => post(`${gw.url}/mcp/nope`, INIT), 404, -31009, 'MCPGW_ERR_UNKNOWN_SERVER'],
      ['malformed JSON', () => post(url, '{"jsonrpc": "2.0", "id": 1, "method": ', withSession()), 400, -32700, 'MCPGW_ERR_PARSE'],
      ['empty body', () => post(url, '', withSession()), 400, -32700, 'MCPGW_ERR_PARSE'],
      ['not JSON-RPC', () => post(url, { hello: 'world' }, withSession()), 400, -32600, 'MCPGW_ERR_INVALID_REQUEST'],
      ['body over the limit', () => post(url, { ...LIST, params: { pad: 'x'.repeat(10_000) } }, withSession()), 413, -31002, 'MCPGW_ERR_BODY_TOO_LARGE'],
      ['wrong content type', () => request(url, 'POST', { 'content-type': 'text/plain', ...withSession() }, JSON.stringify(LIST)), 415, -31006, 'MCPGW_ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['Accept without JSON or SSE', () => post(url, LIST, { ...withSession(), accept: 'text/html' }), 406, -31007, 'MCPGW_ERR_NOT_ACCEPTABLE'],
      ['GET without text/event-stream', () => request(url, 'GET', { ...withSession(), accept: 'application/json' }), 406, -31007, 'MCPGW_ERR_NOT_ACCEPTABLE'],
      ['missing session id', () => post(url, LIST), 400, -31017, 'MCPGW_ERR_SESSION_REQUIRED'],
      ['GET without session id', () => request(url, 'GET', { accept: 'text/event-stream' }), 400, -31017, 'MCPGW_ERR_SESSION_REQUIRED'],
      ['DELETE without session id', () => request(url, 'DELETE'), 400, -31017, 'MCPGW_ERR_SESSION_REQUIRED'],
      ['forged session id', () => post(url, LIST, { 'mcp-session-id': 'AQ' + 'x'.repeat(80) }), 404, -32001, 'MCPGW_ERR_SESSION_NOT_FOUND'],
      ['session of another server', () => post(`${gw.url}/mcp/other`, LIST, withSession()), 404, -32001, 'MCPGW_ERR_SESSION_NOT_FOUND'],
      ['unsupported protocol version', () => post(url, LIST, { ...withSession(), 'mcp-protocol-version': '1999-01-01' }), 400, -31011, 'MCPGW_ERR_UNSUPPORTED_PROTOCOL_VERSION'],
      ['foreign Origin', () => post(url, LIST, { ...withSession(), origin: 'https://evil.example' }), 403, -31010, 'MCPGW_ERR_FORBIDDEN_ORIGIN'],
      ['initialize with a session id', () => post(url, INIT, withSession()), 400, -31018, 'MCPGW_ERR_ALREADY_INITIALIZED'],
      ['initialize in a batch', () => post(url, [INIT], withSession()), 400, -32600, 'MCPGW_ERR_INVALID_REQUEST'],
      ['a batch on 2025-11-25', () => post(url, [LIST, { ...LIST, id: 3 }], withSession()), 400, -31000, 'MCPGW_ERR_BATCH_NOT_SUPPORTED'],
      ['PUT', () => request(url, 'PUT', withSession()), 405, -31008, 'MCPGW_ERR_METHOD_NOT_ALLOWED'],
      ['unknown path', () => request(`${gw.url}/nowhere`, 'GET'), 404, -31023, 'MCPGW_ERR_NOT_FOUND'],
      ['a path that is not a valid URL', () => post(`${gw.url}/mcp/%ZZ`, INIT), 404, -31023, 'MCPGW_ERR_NOT_FOUND'],
      ['a server name longer than the router reads', () => post(`${gw.url}/mcp/${'x'.repeat(300)}`, INIT), 404, -31023, 'MCPGW_ERR_NOT_FOUND'],
      ['positional params', () => post(url, { ...LIST, params: [] }, withSession()), 400, -32600, 'MCPGW_ERR_INVALID_REQUEST'],
      ['a fractional request id', () => post(url, { ...LIST, id: 1.5 }, withSession()), 400, -32600, 'MCPGW_ERR_INVALID_REQUEST'],
    ];
    for (const [name, send, status, rpc, code] of table) {
      it(`${name} → ${status} ${rpc} ${code}`, async () => assertError(await send(), status, rpc, code));
    }

    it('answers 405 with an Allow header', async () => {
      const res = await request(url, 'PUT', withSession());
      assert.equal(res.headers.get('allow'), 'GET, POST, DELETE');
    });

    it('echoes the request id in the error when it could read it', async () => {
      const res = await post(url, { ...LIST, id: 'abc' }, { ...withSession(), 'mcp-protocol-version': '1999-01-01' });
      assert.equal((res.json as { id: unknown }).id, 'abc');
    });

    it('serves an allowed Origin', async () => {
      const res = await post(url, LIST, { ...withSession(), origin: 'https://app.example.com' });
      assert.equal(res.status, 200);
      assert.ok(Array.isArray((rpcOf(res).result as { tools: unknown[] }).tools));
    });

    it('accepts a request without MCP-Protocol-Version (taken as 2025-03-26)', async () => {
      const res = await post(url, LIST, { 'mcp-session-id': sid });
      assert.equal(res.status, 200);
    });

    it('answers a notification with 202 and no body', async () => {
      const res = await post(url, { jsonrpc: '2.0', method: 'notifications/roots/list_changed' }, withSession());
      assert.equal(res.status, 202);
      assert.equal(res.text, '');
      // Said by its length, not as an empty chunked body.
      assert.equal(res.headers.get('content-length'), '0');
      assert.equal(res.headers.get('transfer-encoding'), null);
    });

    it('ends a session on DELETE: later requests get 404', async () => {
      const own = await openSession(url);
      const del = await request(url, 'DELETE', { 'mcp-session-id': own, 'mcp-protocol-version': '2025-11-25' });
      assert.equal(del.status, 200);
      assert.equal(del.headers.get('content-length'), '0');
      assert.equal(del.headers.get('transfer-encoding'), null);
      assertError(await post(url, LIST, { 'mcp-session-id': own }), 404, -32001, 'MCPGW_ERR_SESSION_NOT_FOUND');
      assertError(await request(url, 'DELETE', { 'mcp-session-id': own }), 404, -32001, 'MCPGW_ERR_SESSION_NOT_FOUND');
    });

    it('still serves the session after all those bad requests', async () => {
      const res = await post(url, LIST, withSession());
      assert.equal(res.status, 200);
    });
  });
}

describe('an initialize the upstream refuses', () => {
  it('goes back as the upstream answered it, with no session id, and the upstream is asked with both media types', async () => {
    const { createServer } = await import('node:http');
    const accepts: string[] = [];
    const refusing = createServer((req, res) => {
      accepts.push(String(req.headers.accept));
      req.resume();
      req.on('end', () => res.writeHead(400, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"no"}}'));
    });
    await new Promise<void>((r) => refusing.listen(0, '127.0.0.1', r));
    const { port } = refusing.address() as { port: number };
    const gw = await startGateway({ servers: { api: { upstreams: [{ url: `http://127.0.0.1:${port}/mcp` }], era: 'session' } } });
    try {
      const res = await post(`${gw.url}/mcp/api`, INIT, { accept: 'application/json' });
      assert.equal(res.status, 400);
      assert.equal(res.headers.get('mcp-session-id'), null);
      assert.deepEqual(accepts, ['application/json, text/event-stream']);
    } finally {
      await gw.close();
      refusing.closeAllConnections();
      await new Promise((r) => refusing.close(r));
    }
  });
});

describe('requests Node\'s HTTP parser refuses', () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ servers: { api: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] } } });
  });
  after(async () => {
    await gw?.close();
  });

  const raw = async (head: string): Promise<string> => {
    const { connect } = await import('node:net');
    const { port } = new URL(gw.url);
    return new Promise((resolve, reject) => {
      let got = '';
      const socket = connect(Number(port), '127.0.0.1', () => socket.write(head));
      socket.on('data', (c: Buffer) => (got += c.toString()));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
    });
  };
  const cases: [string, string, number, string][] = [
    ['headers past 16 KiB', `POST /mcp/api HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'MCPGW_ERR_HEADERS_TOO_LARGE'],
    ['two Content-Length values', 'POST /mcp/api HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}', 400, 'MCPGW_ERR_MALFORMED_HTTP'],
  ];
  for (const [name, head, status, code] of cases) {
    it(`${name} → ${status} ${code}, as JSON-RPC`, async () => {
      const answer = await raw(head);
      assert.match(answer, new RegExp(`^HTTP/1.1 ${status} `));
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { data: { code: string } } };
      assert.equal(body.error.data.code, code);
    });
  }
});
