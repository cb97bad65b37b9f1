import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { demoServerPath } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { createPki, type TestPki } from '../helpers/certs.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSession, sessionHeaders } from '../helpers/raw.ts';
import { postSse, progressOf, readSse, slowCount } from '../helpers/sse.ts';

/**
 * Every listener bounds how long a client may take to send a request head, a request body, and
 * how long a kept-alive connection may sit idle: a request that never ends must not hold a
 * connection (a file descriptor) for ever. Established SSE streams are not requests in progress
 * and outlive these limits.
 */

const LIMITS = { headersTimeout: '500ms', requestTimeout: '1s', keepAliveTimeout: '1s' };
/** The longest limit (keep-alive: 1 s, plus the 1 s Node adds) and slack for a busy machine. */
const CLOSED_WITHIN_MS = 4_000;
const STDIO = [{ command: process.execPath, args: [demoServerPath()] }];

interface Held {
  readonly text: string;
  readonly ms: number;
}

/** Opens a connection, writes `data`, and reports what came back and when the gateway closed it. */
function hold(open: () => Socket, data: string): Promise<Held> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let text = '';
    const socket = open();
    // A connection still open well past the bound is the bug: fail instead of waiting for ever.
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the connection is still open after ${CLOSED_WITHIN_MS * 3} ms; got: ${JSON.stringify(text)}`));
    }, CLOSED_WITHIN_MS * 3);
    socket.once(socket instanceof TLSSocket ? 'secureConnect' : 'connect', () => {
      if (data) socket.write(data);
    });
    socket.on('data', (c: Buffer) => (text += c.toString()));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(guard);
      resolve({ text, ms: performance.now() - started });
    });
  });
}

function assertTimedOut(held: Held, jsonRpc: boolean): void {
  assert.ok(held.ms < CLOSED_WITHIN_MS, `closed after ${Math.round(held.ms)} ms`);
  if (!jsonRpc) return;
  assert.match(held.text, /^HTTP\/1\.1 408 /, held.text);
  const body = JSON.parse(held.text.slice(held.text.indexOf('\r\n\r\n') + 4)) as { jsonrpc: string; error: { code: number; data: { code: string } } };
  assert.equal(body.jsonrpc, '2.0');
  assert.equal(body.error.data.code, 'MCPGW_ERR_REQUEST_TIMEOUT');
  assert.equal(body.error.code, -31005);
}

const SLOW_BODY = 'POST /mcp/api HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"jso';
const SLOW_HEAD = 'POST /mcp/api HTTP/1.1\r\nHost: x\r\nContent-Type: appl';

describe('listener limits: plain HTTP MCP listener and the metrics listener', () => {
  let gw: Gateway;
  let port: number;
  let metricsPort: number;
  before(async () => {
    gw = await startGateway({ listen: { host: '127.0.0.1', port: 0, ...LIMITS }, events: { keepAlive: '1500ms' }, servers: { api: { upstreams: STDIO } } });
    port = Number(new URL(gw.url).port);
    metricsPort = Number(new URL(gw.metricsUrl!).port);
  });
  after(async () => {
    await gw?.close();
  });

  const mcp = () => netConnect(port, '127.0.0.1');
  const metrics = () => netConnect(metricsPort, '127.0.0.1');

  it('a body that never ends (Content-Length 1000, 6 bytes sent) → 408 MCPGW_ERR_REQUEST_TIMEOUT and closed', async () => {
    assertTimedOut(await hold(mcp, SLOW_BODY), true);
  });

  it('a head that never completes → 408 MCPGW_ERR_REQUEST_TIMEOUT and closed', async () => {
    assertTimedOut(await hold(mcp, SLOW_HEAD), true);
  });

  it('a connection that sends nothing → closed', async () => {
    assertTimedOut(await hold(mcp, ''), false);
  });

  it('a kept-alive connection left idle after its answer → closed', async () => {
    const held = await hold(mcp, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(held.text, /^HTTP\/1\.1 200 /);
    assertTimedOut(held, false);
  });

  it('an answer already streaming when its own request runs out of time is cut, not written into', async () => {
    const sid = await openSession(`${gw.url}/mcp/api`);
    // A GET whose (chunked) body never ends: the SSE stream starts at once, the request never completes.
    const held = await hold(mcp, `GET /mcp/api HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nMcp-Session-Id: ${sid}\r\nMcp-Protocol-Version: 2025-11-25\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n`);
    assert.match(held.text, /^HTTP\/1\.1 200 /);
    assert.match(held.text, /text\/event-stream/);
    assert.equal(held.text.match(/HTTP\/1\.1/g)?.length, 1, held.text);
    assertTimedOut(held, false);
  });

  it('metrics listener: a body that never ends → closed', async () => {
    assertTimedOut(await hold(metrics, 'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"jso'), false);
  });

  it('metrics listener: a head that never completes → closed', async () => {
    assertTimedOut(await hold(metrics, 'GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: te'), false);
  });

  it('metrics listener: a connection that sends nothing → closed', async () => {
    assertTimedOut(await hold(metrics, ''), false);
  });

  it('established SSE streams outlive the limits: an idle GET stream keeps its keep-alives, a slow POST answer completes', async () => {
    const url = `${gw.url}/mcp/api`;
    const sid = await openSession(url);
    const abort = new AbortController();
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...sessionHeaders(sid) }, signal: abort.signal });
    assert.equal(res.status, 200);
    const opened = performance.now();
    // When each keep-alive comment arrived, in ms since the stream opened; ends when the stream does.
    const keepAlives: number[] = [];
    let ended = false;
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) {
        const text = decoder.decode(chunk as Uint8Array, { stream: true });
        for (let i = text.indexOf(': keep-alive'); i >= 0; i = text.indexOf(': keep-alive', i + 1)) keepAlives.push(performance.now() - opened);
      }
      ended = true;
    })().catch(() => {});
    try {
      // Past the head, body and keep-alive limits (and Node's 1 s keep-alive grace), the client silent
      // all along, and the stream itself silent for longer than any of the limits between keep-alives.
      await new Promise((r) => setTimeout(r, 4_500));
      assert.equal(ended, false, 'the GET stream was closed');
      assert.ok(keepAlives.some((t) => t > 3_000), `keep-alives still written after the limits; got them at ${keepAlives.map(Math.round).join(', ')} ms`);
      // Silent for longer than any of the limits between its events, too.
      const post = await postSse(url, slowCount(7, 2, 1_500), sessionHeaders(sid));
      assert.equal(post.res.status, 200);
      const events = await readSse(post.res, (e) => e.message?.id === 7, post.abort);
      assert.deepEqual(progressOf(events, 'p7'), [1, 2]);
      assert.ok(events.at(-1)?.message?.result, JSON.stringify(events.at(-1)));
      assert.equal(ended, false, 'the GET stream was closed');
    } finally {
      abort.abort();
      await reading;
    }
  });
});

describe('listener limits: TLS MCP listener', () => {
  let pki: TestPki;
  let gw: Gateway;
  let port: number;
  before(async () => {
    pki = createPki();
    const server = pki.issue('gateway', { server: true });
    gw = await startGateway({ listen: { host: '127.0.0.1', port: 0, ...LIMITS, tls: { certFile: server.certFile, keyFile: server.keyFile } }, servers: { api: { upstreams: STDIO } } });
    port = Number(new URL(gw.url).port);
  });
  after(async () => {
    await gw?.close();
  });

  const tls = () => tlsConnect({ port, host: '127.0.0.1', ca: pki.ca.cert, servername: 'localhost' });

  it('a body that never ends → 408 MCPGW_ERR_REQUEST_TIMEOUT and closed', async () => {
    assertTimedOut(await hold(tls, SLOW_BODY), true);
  });

  it('a head that never completes → 408 MCPGW_ERR_REQUEST_TIMEOUT and closed', async () => {
    assertTimedOut(await hold(tls, SLOW_HEAD), true);
  });

  it('a TCP connection that never starts its TLS handshake → closed', async () => {
    assertTimedOut(await hold(() => netConnect(port, '127.0.0.1'), ''), false);
  });
});
