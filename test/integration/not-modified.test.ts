import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { listenUpstream, readBody, type HandUpstream } from '../helpers/hand-upstream.ts';
import { openSession, sessionHeaders } from '../helpers/raw.ts';

/**
 * Found by the attacker sweep of e95e7c5: an answer neither JSON nor SSE is written at hand with
 * its length, and the code means to leave the length out for a 204 or a 304 (RFC 9110 §8.6: a 304
 * may carry only the length the 200 would have had), but a 304 comes with a (empty) body stream,
 * so it goes out with `content-length: 0`. fd0f227 sent none.
 */
async function startNotModified(): Promise<HandUpstream> {
  return listenUpstream((req, res) => {
    if (req.method === 'DELETE') return void res.writeHead(304).end();
    if (req.method !== 'POST') return void res.writeHead(405).end();
    void readBody(req).then((text) => {
      const msg = JSON.parse(text) as { id?: unknown; method: string; params?: { protocolVersion?: string } };
      if (msg.id === undefined) return void res.writeHead(202).end();
      const result = { protocolVersion: msg.params?.protocolVersion, capabilities: {}, serverInfo: { name: 'not-modified', version: '1' } };
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'upstream-session' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
    });
  });
}

describe('an upstream answering 304', () => {
  let upstream: HandUpstream;
  let gw: Gateway;
  before(async () => {
    upstream = await startNotModified();
    gw = await startGateway({ servers: { n: { upstreams: [{ url: upstream.url }], era: 'session' } } });
  });
  after(async () => {
    await gw?.close();
    await upstream?.close();
  });

  it('is passed on without a content-length, as a 204 is', async () => {
    const url = `${gw.url}/mcp/n`;
    const sid = await openSession(url);
    // Raw: fetch hides a 304's headers behind its own handling of it.
    const { status, headers } = await new Promise<{ status: number | undefined; headers: IncomingMessage['headers'] }>((resolve, reject) => {
      const req = httpRequest(url, { method: 'DELETE', headers: sessionHeaders(sid) }, (res) => {
        res.resume();
        resolve({ status: res.statusCode, headers: res.headers });
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 304);
    assert.equal(headers['content-length'], undefined);
  });
});
