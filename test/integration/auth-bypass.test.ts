import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { prefixedName } from '../../src/protocol/names.ts';
import { meta, statelessHeaders, statelessPost } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { openSession, post, rpcOf } from '../helpers/raw.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';
import { startSubscribeUpstream } from '../helpers/subscribe-upstream.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/**
 * auth: other spellings of a hidden name, and other ways to reach it, found by an adversarial
 * sweep — each must meet the policy exactly as the plain name does.
 */
const PUBLIC = 'https://gateway.test';
const LONG = 'admin_delete_all_customer_records_in_the_production_database_now';
const SECRET = { 'demo://secret': { scopes: ['admin'] } };

describe('auth: no way around a hidden name', () => {
  let issuer: TestIssuer;
  let recording: RecordingUpstream;
  let subscribing: Awaited<ReturnType<typeof startSubscribeUpstream>>;
  let demo: HttpUpstreamProcess;
  let stateless: Server;
  const statelessBodies: string[] = [];
  let gw: Gateway;

  before(async () => {
    [issuer, recording, subscribing, demo] = await Promise.all([startTestIssuer(), startRecordingUpstream(), startSubscribeUpstream(), startDemoUpstream('a', 0, { env: { DEMO_EXTRA_TOOLS: LONG } })]);
    // A 2026-07-28 upstream that records what it gets and acknowledges a listen with what it was asked.
    stateless = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        statelessBodies.push(body);
        const m = JSON.parse(body) as { id: unknown; params: { notifications: unknown } };
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: m.params.notifications } })}\n\n`);
      });
    });
    await new Promise<void>((r) => stateless.listen(0, '127.0.0.1', r));
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], publicUrl: PUBLIC },
      servers: {
        api: { upstreams: [{ url: recording.url }], auth: { resources: SECRET } },
        dev: { compose: ['api'], auth: { resources: { 'api+demo://secret': { scopes: ['admin'] } } } },
        subs: { era: 'session', upstreams: [{ url: subscribing.url }], auth: { resources: SECRET } },
        modern: { era: 'stateless', upstreams: [{ url: `http://127.0.0.1:${(stateless.address() as AddressInfo).port}/mcp` }], auth: { resources: SECRET } },
        long: { upstreams: [{ url: demo.url }] },
        virtual: { compose: ['long'], auth: { tools: { [prefixedName('long', LONG)]: { scopes: ['admin'] } } } },
      },
    });
  });
  after(async () => {
    await gw?.close();
    stateless?.closeAllConnections();
    await Promise.all([issuer?.close(), recording?.close(), subscribing?.close(), demo?.stop(), new Promise((r) => stateless?.close(r))]);
  });

  const reader = (server: string, extra: Record<string, unknown> = {}) => issuer.sign({ sub: 'reader', aud: `${PUBLIC}/mcp/${server}`, scope: 'mcp', ...extra });
  async function session(server: string, token?: string) {
    const auth = { authorization: `Bearer ${token ?? (await reader(server))}` };
    const sid = await openSession(`${gw.url}/mcp/${server}`, '2025-11-25', auth);
    return { ...auth, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  }

  it('a resource URI written another way (case, spaces, tabs, dot segments) is the same resource', async () => {
    for (const [server, prefix] of [['api', ''], ['dev', 'api+']] as const) {
      const h = await session(server);
      for (const uri of ['demo://secret', 'DEMO://secret', 'Demo://secret', ' demo://secret', 'demo://secret ', 'demo://sec\tret', 'demo://x/../secret']) {
        const res = await post(`${gw.url}/mcp/${server}`, { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: prefix + uri } }, h);
        assert.doesNotMatch(res.text, /secret text/, `${server}: ${JSON.stringify(prefix + uri)}`);
      }
    }
    const translated = await statelessPost(`${gw.url}/mcp/api`, 'resources/read', { uri: 'DEMO://secret' }, { headers: { authorization: `Bearer ${await reader('api')}` } });
    assert.doesNotMatch(translated.text, /secret text/, '2026-07-28 front door');
  });

  it('subscriptions/listen does not subscribe to a hidden resource, on either era of upstream', async () => {
    for (const server of ['subs', 'modern']) {
      const params = { notifications: { resourceSubscriptions: ['demo://secret', 'demo://public'] }, _meta: meta() };
      const abort = new AbortController();
      const res = await fetch(`${gw.url}/mcp/${server}`, {
        method: 'POST',
        headers: { ...statelessHeaders('subscriptions/listen', params), authorization: `Bearer ${await reader(server)}` },
        body: JSON.stringify({ jsonrpc: '2.0', id: 'L1', method: 'subscriptions/listen', params }),
        signal: abort.signal,
      });
      assert.equal(res.status, 200);
      const reading = res.body!.getReader();
      const first = Buffer.from((await reading.read()).value!).toString();
      abort.abort();
      assert.match(first, /demo:\/\/secret/, `${server}: acknowledged like any resource`);
    }
    assert.equal(subscribing.subscribed.includes('demo://secret'), false, 'the session-era upstream was never asked');
    assert.ok(subscribing.subscribed.includes('demo://public'));
    assert.equal(statelessBodies.some((b) => b.includes('demo://secret')), false, 'the 2026-07-28 upstream never saw the name');
  });

  it('a virtual server serves only the published (shortened) spelling of a long name', async () => {
    const h = await session('virtual');
    for (const name of [prefixedName('long', LONG), `long__${LONG}`]) {
      const res = await post(`${gw.url}/mcp/virtual`, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name, arguments: {} } }, h);
      assert.doesNotMatch(JSON.stringify(rpcOf(res)), new RegExp(`a:${LONG}`), `${name} did not run`);
    }
  });

  it('a client token (no sub) never shares a principal with a user of the same name', async () => {
    const alice = await session('api', await reader('api', { sub: 'alice' }));
    const client = await issuer.sign({ client_id: 'alice', aud: `${PUBLIC}/mcp/api`, scope: 'mcp' });
    const res = await post(`${gw.url}/mcp/api`, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, { ...alice, authorization: `Bearer ${client}` });
    assert.equal(res.status, 404);
  });
});
