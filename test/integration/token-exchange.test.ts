import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import type { Gateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startOidcProvider, type OidcProvider } from '../helpers/oauth.ts';
import { statelessPost } from '../helpers/era.ts';
import { connectLegacyClient } from '../helpers/legacy.ts';
import { INIT, openSession, post, rpcOf } from '../helpers/raw.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';

const AUD = 'urn:mcpgw:test';
const V = { 'mcp-protocol-version': '2025-11-25' };
const UPSTREAM_RESOURCE = 'https://upstream.test/mcp';
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('auth: upstream tokens on behalf of the caller (RFC 8693 token exchange)', () => {
  let oidc: OidcProvider;
  let up: RecordingUpstream;
  let hanging: Server;
  let gw: Gateway;
  let dir: string;
  /** Every log line the gateway wrote, at the most talkative level. */
  const logged: string[] = [];
  let refuseNext = false;

  before(async () => {
    oidc = await startOidcProvider();
    // The upstream is a resource server of its own: it takes only a token of this issuer for itself.
    up = await startRecordingUpstream({
      requireHeader: {
        name: 'authorization',
        check: (v) => {
          if (refuseNext) {
            refuseNext = false;
            return false;
          }
          if (!v?.startsWith('Bearer ')) return false;
          const claims = decodeJwt(v.slice(7));
          return claims.iss === oidc.issuer && claims.aud === UPSTREAM_RESOURCE;
        },
      },
    });
    // A token endpoint that takes the request and never answers.
    hanging = createServer(() => {});
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-exchange-'));
    writeFileSync(join(dir, 'secret'), 'gateway-secret-0123456789\n');
    const exchange = { tokenUrl: oidc.tokenUrl, clientId: 'gateway', clientSecretFile: join(dir, 'secret'), scope: 'upstream', resource: UPSTREAM_RESOURCE };
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: oidc.issuer, jwksUri: oidc.jwksUri, algorithms: ['RS256'] }], audience: AUD },
      servers: {
        obo: { upstreams: [{ url: up.url, credentials: { tokenExchange: exchange } }] },
        // client_secret_post, and a 2026-07-28 client's requests translated onto sessions the gateway pools per caller.
        posted: { era: 'session', upstreams: [{ url: up.url, credentials: { tokenExchange: { ...exchange, clientAuth: 'client_secret_post' } } }] },
        // era: auto, asked first by the test of the era probe.
        probed: { upstreams: [{ url: up.url, credentials: { tokenExchange: exchange } }] },
        slow: { upstreams: [{ url: up.url, credentials: { tokenExchange: { ...exchange, tokenUrl: `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/token`, timeout: '300ms' } } }] },
      },
    }, { logger: createLogger('trace', new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString()), done()) })) });
  });
  after(async () => {
    await gw?.close();
    hanging?.closeAllConnections();
    await Promise.all([oidc?.close(), up?.close(), new Promise((resolve) => hanging?.close(resolve))]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const callerToken = (client: 'reader' | 'admin') => oidc.token(client, 'mcp tools:read', AUD);
  const exchanges = () => oidc.exchange.requests.length;
  const seenSince = (n: number) => up.requests.slice(n).map((r) => r.headers.authorization);

  /** A session on `server` and one tools/call in it; the upstream's Authorization headers of those requests. */
  async function use(server: string, caller: string): Promise<string[]> {
    const from = up.requests.length;
    const url = `${gw.url}/mcp/${server}`;
    const sid = await openSession(url, '2025-11-25', bearer(caller));
    const res = await post(url, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' } } }, { ...bearer(caller), 'mcp-session-id': sid, ...V });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(rpcOf(res).result, { content: [{ type: 'text', text: 'hi' }] });
    return seenSince(from) as string[];
  }

  it("the upstream gets a token for itself carrying the caller's sub, exchanged once for all of a session's requests", async () => {
    const caller = await callerToken('reader');
    const before = exchanges();
    const seen = await use('obo', caller);
    assert.ok(seen.length >= 3, 'initialize, initialized, tools/call');
    assert.equal(new Set(seen).size, 1, 'one token for every request');
    assert.equal(exchanges() - before, 1, 'one exchange');
    const upstreamToken = seen[0]!.slice('Bearer '.length);
    assert.notEqual(upstreamToken, caller);
    const { payload } = await jwtVerify(upstreamToken, createRemoteJWKSet(new URL(oidc.jwksUri)), { issuer: oidc.issuer, audience: UPSTREAM_RESOURCE });
    assert.equal(payload.sub, 'reader');
    assert.equal(payload.scope, 'upstream');
    assert.deepEqual(payload.act, { sub: 'gateway' });
    // What the token endpoint was asked (RFC 8693 §2.1), by the gateway's own client.
    const asked = oidc.exchange.requests.at(-1)!;
    assert.equal(asked.client, 'gateway');
    assert.equal(asked.params.subject_token, caller);
    assert.equal(asked.params.subject_token_type, 'urn:ietf:params:oauth:token-type:access_token');
    assert.equal(asked.params.resource, UPSTREAM_RESOURCE);
    assert.equal(asked.params.scope, 'upstream');
    // The caller's own token never reaches the upstream.
    for (const r of up.requests) assert.ok(!JSON.stringify(r.headers).includes(caller) && !r.body.includes(caller));
  });

  it('two callers get two tokens, each for its own sub; a caller back again reuses its token', async () => {
    const [reader, admin] = await Promise.all([callerToken('reader'), callerToken('admin')]);
    const before = exchanges();
    const forReader = await use('obo', reader);
    const forAdmin = await use('obo', admin);
    assert.equal(exchanges() - before, 2);
    assert.notEqual(forReader[0], forAdmin[0]);
    assert.equal(decodeJwt(forReader[0]!.slice(7)).sub, 'reader');
    assert.equal(decodeJwt(forAdmin[0]!.slice(7)).sub, 'admin');
    const again = await use('obo', reader);
    assert.equal(exchanges() - before, 2, 'no third exchange');
    assert.equal(new Set([...again, forReader[0]]).size, 1);
  });

  it('concurrent requests with one caller token share one exchange', async () => {
    const caller = await callerToken('reader');
    const before = exchanges();
    const from = up.requests.length;
    const answers = await Promise.all(Array.from({ length: 6 }, () => post(`${gw.url}/mcp/obo`, INIT, bearer(caller))));
    for (const res of answers) assert.equal(res.status, 200, res.text);
    assert.equal(exchanges() - before, 1);
    assert.equal(new Set(seenSince(from)).size, 1);
  });

  it('an exchanged token is exchanged anew once it is about to expire', async () => {
    oidc.exchange.ttl = 2;
    try {
      const caller = await callerToken('admin');
      const before = exchanges();
      const first = await use('obo', caller);
      assert.equal(exchanges() - before, 1);
      // Kept until a fifth of its lifetime is left (1.6 s of 2 s here).
      await sleep(1_800);
      const second = await use('obo', caller);
      assert.equal(exchanges() - before, 2);
      assert.notEqual(first[0], second[0]);
      assert.equal(decodeJwt(second[0]!.slice(7)).sub, 'admin');
    } finally {
      oidc.exchange.ttl = 300;
    }
  });

  it('a refused exchange fails the request with MCPGW_ERR_TOKEN_EXCHANGE_DENIED, and nothing reaches the upstream', async () => {
    const caller = await callerToken('reader');
    const from = up.requests.length;
    oidc.exchange.refuse = 'access_denied';
    let res;
    try {
      res = await post(`${gw.url}/mcp/obo`, INIT, bearer(caller));
    } finally {
      oidc.exchange.refuse = undefined;
    }
    assert.equal(res.status, 403, res.text);
    const error = rpcOf(res).error!;
    assert.equal(error.code, -31026);
    assert.equal(error.data?.code, 'MCPGW_ERR_TOKEN_EXCHANGE_DENIED');
    assert.match(error.message, /access_denied/);
    assert.ok(!res.text.includes(caller));
    assert.equal(up.requests.length, from);
    // Not cached: the next request exchanges again, and passes.
    assert.equal((await post(`${gw.url}/mcp/obo`, INIT, bearer(caller))).status, 200);
  });

  it('a token endpoint that does not answer fails the request within tokenExchange.timeout (MCPGW_ERR_TOKEN_EXCHANGE_FAILED)', async () => {
    const caller = await callerToken('reader');
    const from = up.requests.length;
    const res = await post(`${gw.url}/mcp/slow`, INIT, bearer(caller));
    assert.equal(res.status, 503, res.text);
    const error = rpcOf(res).error!;
    assert.equal(error.code, -31203);
    assert.equal(error.data?.code, 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED');
    assert.match(error.message, /did not answer within 300 ms/);
    assert.equal(up.requests.length, from);
  });

  it("client_secret_post; a 2026-07-28 caller's request, translated onto a session the gateway opens for it, goes out on its exchanged token", async () => {
    const caller = await callerToken('admin');
    const before = exchanges();
    const from = up.requests.length;
    const res = await statelessPost(`${gw.url}/mcp/posted`, 'tools/call', { name: 'echo', arguments: { text: 'translated' } }, { headers: bearer(caller) });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual((rpcOf(res).result as { content: unknown }).content, [{ type: 'text', text: 'translated' }]);
    // The pooled session's initialize is the gateway's own message, sent for this caller: the same token as the call.
    const seen = seenSince(from);
    assert.ok(seen.length >= 3, 'initialize, initialized, tools/call');
    assert.equal(new Set(seen).size, 1);
    assert.equal(decodeJwt(seen[0]!.slice(7)).sub, 'admin');
    assert.equal(exchanges() - before, 1);
    assert.equal(oidc.exchange.requests.at(-1)!.client, 'gateway');
  });

  it("a 2024-11-05 client's messages, which the gateway writes upstream itself, go out on the session principal's exchanged token", async () => {
    const caller = await callerToken('reader');
    const before = exchanges();
    const from = up.requests.length;
    const { client, close } = await connectLegacyClient(`${gw.url}/mcp/obo/sse`, { headers: bearer(caller) });
    try {
      const result = await client.callTool({ name: 'echo', arguments: { text: 'old' } });
      assert.deepEqual(result.content, [{ type: 'text', text: 'old' }]);
    } finally {
      await close();
    }
    const seen = seenSince(from);
    assert.ok(seen.length >= 3, 'initialize, initialized, tools/call');
    assert.equal(new Set(seen).size, 1);
    assert.equal(decodeJwt(seen[0]!.slice(7)).sub, 'reader');
    assert.equal(exchanges() - before, 1);
  });

  it('an upstream 401 to an exchanged token is the gateway\'s (502), and that caller\'s next request exchanges anew', async () => {
    const caller = await callerToken('admin');
    const url = `${gw.url}/mcp/obo`;
    assert.equal((await post(url, INIT, bearer(caller))).status, 200);
    const before = exchanges();
    const first = up.requests.at(-1)!.headers.authorization;
    refuseNext = true;
    const res = await post(url, INIT, bearer(caller));
    assert.equal(res.status, 502, res.text);
    assert.equal(rpcOf(res).error!.data?.code, 'MCPGW_ERR_UPSTREAM_CREDENTIALS');
    assert.equal(exchanges(), before, 'no exchange for the refused request');
    assert.equal((await post(url, INIT, bearer(caller))).status, 200);
    assert.equal(exchanges() - before, 1);
    assert.notEqual(up.requests.at(-1)!.headers.authorization, first);
  });

  it("the era probe of era: auto goes out for the caller whose request asked, on their exchanged token; refused, it fails that request cleanly", async () => {
    const caller = await callerToken('reader');
    const from = up.requests.length;
    oidc.exchange.refuse = 'access_denied';
    let refused;
    try {
      refused = await statelessPost(`${gw.url}/mcp/probed`, 'tools/list', {}, { headers: bearer(caller) });
    } finally {
      oidc.exchange.refuse = undefined;
    }
    assert.equal(refused.status, 403, refused.text);
    assert.equal(rpcOf(refused).error!.data?.code, 'MCPGW_ERR_TOKEN_EXCHANGE_DENIED');
    assert.equal(up.requests.length, from, 'nothing went upstream, without a token or with the caller\'s');
    // Not remembered: asked again, the probe goes out on the caller's exchanged token.
    const res = await statelessPost(`${gw.url}/mcp/probed`, 'tools/list', {}, { headers: bearer(caller) });
    assert.equal(res.status, 200, res.text);
    const discover = up.requests.slice(from).find((r) => r.body.includes('"server/discover"'));
    assert.ok(discover, 'the probe reached the upstream');
    assert.equal(decodeJwt(discover.headers.authorization!.slice(7)).sub, 'reader');
    for (const r of up.requests.slice(from)) assert.ok(!JSON.stringify(r.headers).includes(caller));
  });

  it('no token, the caller\'s or an exchanged one, reaches the log or the metrics', async () => {
    const tokens = new Set<string>();
    for (const r of oidc.exchange.requests) if (r.params.subject_token) tokens.add(r.params.subject_token);
    for (const r of up.requests) if (r.headers.authorization) tokens.add(r.headers.authorization.slice('Bearer '.length));
    assert.ok(tokens.size >= 10, `${tokens.size} tokens seen`);
    assert.ok(logged.length > 0);
    const text = logged.join('') + (await gw.metrics.registry.metrics());
    for (const t of tokens) assert.ok(!text.includes(t), 'a token was logged');
    assert.ok(!text.includes('gateway-secret-0123456789'));
  });
});

describe('auth: a virtual server over a member that exchanges tokens discovers its members for a caller', () => {
  let oidc: OidcProvider;
  let up: RecordingUpstream;
  let gw: Gateway;
  let dir: string;
  const logged: string[] = [];
  const lines = (msg: string, server = 'virt') => logged.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === msg && l.server === server);

  before(async () => {
    oidc = await startOidcProvider();
    up = await startRecordingUpstream({
      requireHeader: { name: 'authorization', check: (v) => v?.startsWith('Bearer ') === true && decodeJwt(v.slice(7)).aud === UPSTREAM_RESOURCE },
    });
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-exchange-compose-'));
    writeFileSync(join(dir, 'secret'), 'gateway-secret-0123456789\n');
    const exchange = { tokenUrl: oidc.tokenUrl, clientId: 'gateway', clientSecretFile: join(dir, 'secret'), scope: 'upstream', resource: UPSTREAM_RESOURCE };
    gw = await startGateway(
      {
        auth: { mode: 'jwt', issuers: [{ issuer: oidc.issuer, jwksUri: oidc.jwksUri, algorithms: ['RS256'] }], audience: AUD },
        servers: {
          obo: { upstreams: [{ url: up.url, credentials: { tokenExchange: exchange } }] },
          virt: { compose: ['obo'] },
          // Discovered for a 2026-07-28 caller, whose requests go on a session the gateway pools for it.
          pooled: { compose: ['obo'] },
        },
      },
      { logger: createLogger('info', new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString()), done()) })) },
    );
  });
  after(async () => {
    await gw?.close();
    await Promise.all([oidc?.close(), up?.close()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('not at start (the gateway has no token to exchange), but on behalf of the first caller, on their exchanged token', async () => {
    await sleep(300);
    assert.deepEqual(lines('virtual server: members could not be listed'), [], 'no discovery without a caller');
    assert.deepEqual(lines('virtual server composed'), []);
    assert.equal(up.requests.length, 0);
    const caller = await oidc.token('reader', 'mcp tools:read', AUD);
    const sid = await openSession(`${gw.url}/mcp/virt`, '2025-11-25', bearer(caller));
    assert.ok(sid);
    for (let i = 0; i < 100 && lines('virtual server composed').length === 0; i++) await sleep(20);
    const [composed] = lines('virtual server composed');
    assert.ok(composed, logged.join(''));
    assert.ok((composed.items as number) > 0, 'the member was listed');
    const listed = up.requests.filter((r) => r.body.includes('"tools/list"'));
    assert.ok(listed.length > 0);
    for (const r of up.requests) {
      assert.equal(decodeJwt(r.headers.authorization!.slice(7)).sub, 'reader', "the caller's exchanged token");
      assert.ok(!JSON.stringify(r.headers).includes(caller), "never the caller's own");
    }
    // Done once: another caller's session does not discover again.
    const from = up.requests.length;
    await openSession(`${gw.url}/mcp/virt`, '2025-11-25', bearer(await oidc.token('admin', 'mcp tools:read', AUD)));
    await sleep(200);
    assert.equal(up.requests.slice(from).filter((r) => r.body.includes('"tools/list"')).length, 0);
  });

  it("for a 2026-07-28 caller, on a session the gateway pools for it: on that principal's latest token, exchanged", async () => {
    assert.deepEqual(lines('virtual server composed', 'pooled'), []);
    const from = up.requests.length;
    const res = await statelessPost(`${gw.url}/mcp/pooled`, 'tools/list', {}, { headers: bearer(await oidc.token('reader', 'mcp tools:read', AUD)) });
    assert.equal(res.status, 200, res.text);
    for (let i = 0; i < 100 && lines('virtual server composed', 'pooled').length === 0; i++) await sleep(20);
    assert.ok(lines('virtual server composed', 'pooled')[0], logged.join(''));
    assert.deepEqual(lines('virtual server: members could not be listed', 'pooled'), []);
    for (const r of up.requests.slice(from)) assert.equal(decodeJwt(r.headers.authorization!.slice(7)).sub, 'reader');
  });
});
