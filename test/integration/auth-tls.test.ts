import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import type { Gateway } from '../../src/gateway.ts';
import { createPki, type Issued, type TestPki } from '../helpers/certs.ts';
import { startGateway } from '../helpers/gateway.ts';
import { INIT, JSON_AND_SSE, read, rpcOf } from '../helpers/raw.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';

const V = { 'mcp-protocol-version': '2025-11-25' };
const LIST = { jsonrpc: '2.0', id: 2, method: 'tools/list' };

/** POST over HTTPS with an optional client certificate. */
async function tlsPost(url: string, ca: string, client: Issued | undefined, body: unknown, headers: Record<string, string> = {}) {
  const dispatcher = new Agent({ connect: { ca, ...(client ? { cert: client.cert, key: client.key } : {}) } });
  try {
    const res = await undiciFetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: JSON_AND_SSE, ...headers },
      body: JSON.stringify(body),
      dispatcher,
    });
    return await read(res as unknown as Response);
  } finally {
    await dispatcher.close();
  }
}

describe('auth: TLS listener and client certificates (mtls)', () => {
  let pki: TestPki;
  let foreign: TestPki;
  let up: RecordingUpstream;
  let gw: Gateway;
  let url: string;
  let alice: Issued;
  let bob: Issued;
  let mallory: Issued;
  let stranger: Issued;

  before(async () => {
    pki = createPki();
    foreign = createPki('another CA');
    const server = pki.issue('gateway', { server: true });
    alice = pki.issue('alice');
    bob = pki.issue('bob');
    mallory = pki.issue('mallory');
    stranger = foreign.issue('alice');
    up = await startRecordingUpstream({ json: true });
    gw = await startGateway({
      listen: { host: '127.0.0.1', port: 0, tls: { certFile: server.certFile, keyFile: server.keyFile, clientCaFile: pki.ca.certFile } },
      auth: {
        mode: 'mtls',
        clientCerts: {
          subject: 'cn',
          principals: { alice: { name: 'alice@acme', scopes: ['admin'] }, bob: { name: 'bob@acme' } },
        },
      },
      servers: { api: { upstreams: [{ url: up.url }], auth: { tools: { 'admin_*': { scopes: ['admin'] } } } } },
    });
    url = `${gw.url}/mcp/api`;
    assert.match(url, /^https:/);
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  const open = async (who: Issued) => {
    const res = await tlsPost(url, pki.ca.cert, who, INIT);
    assert.equal(res.status, 200, res.text);
    return res.headers.get('mcp-session-id')!;
  };

  it('maps a client certificate to its principal and applies its scopes', async () => {
    const sid = await open(alice);
    const res = await tlsPost(url, pki.ca.cert, alice, LIST, { 'mcp-session-id': sid, ...V });
    assert.deepEqual(((rpcOf(res).result as { tools: { name: string }[] }).tools).map((t) => t.name).sort(), ['add', 'admin_reset', 'echo', 'secret_report']);
    const bobSid = await open(bob);
    const bobs = await tlsPost(url, pki.ca.cert, bob, LIST, { 'mcp-session-id': bobSid, ...V });
    assert.deepEqual(((rpcOf(bobs).result as { tools: { name: string }[] }).tools).map((t) => t.name).sort(), ['add', 'echo', 'secret_report']);
  });

  const table: [string, () => Issued | undefined, number, string][] = [
    ['no certificate', () => undefined, 401, 'MCPGW_ERR_UNAUTHORIZED'],
    ['a certificate from another CA (same CN)', () => stranger, 401, 'MCPGW_ERR_UNAUTHORIZED'],
    ['a valid certificate whose subject is not mapped', () => mallory, 403, 'MCPGW_ERR_FORBIDDEN'],
  ];
  for (const [name, who, status, code] of table) {
    it(`${name} → ${status} ${code}, upstream untouched`, async () => {
      const seen = up.requests.length;
      const res = await tlsPost(url, pki.ca.cert, who(), INIT);
      assert.equal(res.status, status, res.text);
      assert.equal((res.json as { error: { data: { code: string } } }).error.data.code, code);
      assert.equal(up.requests.length, seen);
    });
  }

  it("another certificate holder's session → 404, upstream untouched", async () => {
    const sid = await open(alice);
    const seen = up.requests.length;
    const res = await tlsPost(url, pki.ca.cert, bob, LIST, { 'mcp-session-id': sid, ...V });
    assert.equal(res.status, 404);
    assert.equal(up.requests.length, seen);
  });
});

describe('auth: mTLS to an upstream', () => {
  let pki: TestPki;
  let up: RecordingUpstream;
  let gateway: Issued;

  before(async () => {
    pki = createPki();
    const server = pki.issue('upstream', { server: true });
    gateway = pki.issue('mcp-gateway');
    up = await startRecordingUpstream({ tls: { cert: server.cert, key: server.key, ca: pki.ca.cert } });
  });
  after(async () => {
    await up?.close();
  });

  it('presents the configured client certificate and trusts the configured CA', async () => {
    const gw = await startGateway({
      servers: { api: { upstreams: [{ url: up.url, tls: { caFile: pki.ca.certFile, certFile: gateway.certFile, keyFile: gateway.keyFile } }] } },
    });
    try {
      const res = await fetch(`${gw.url}/mcp/api`, { method: 'POST', headers: { 'content-type': 'application/json', accept: JSON_AND_SSE }, body: JSON.stringify(INIT) });
      assert.equal(res.status, 200, await res.text());
      assert.equal(up.requests.at(-1)!.clientCn, 'mcp-gateway');
    } finally {
      await gw.close();
    }
  });

  it('without a client certificate the upstream refuses the handshake → 502', async () => {
    const gw = await startGateway({ servers: { api: { upstreams: [{ url: up.url, tls: { caFile: pki.ca.certFile } }] } } });
    try {
      const seen = up.requests.length;
      const res = await fetch(`${gw.url}/mcp/api`, { method: 'POST', headers: { 'content-type': 'application/json', accept: JSON_AND_SSE }, body: JSON.stringify(INIT) });
      assert.equal(res.status, 502, await res.text());
      assert.equal(up.requests.length, seen);
    } finally {
      await gw.close();
    }
  });
});
