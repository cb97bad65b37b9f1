import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { demoServerPath } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startOidcProvider, startTestIssuer, type OidcProvider, type TestIssuer } from '../helpers/oauth.ts';
import { INIT, openSession, post, request, rpcOf } from '../helpers/raw.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';

const AUD = 'urn:mcpgw:test';
const V = { 'mcp-protocol-version': '2025-11-25' };
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const UPSTREAM_RESOURCE = 'https://upstream.test/mcp';

describe('auth: upstream credentials (no token passthrough)', () => {
  let oidc: OidcProvider;
  let issuer: TestIssuer;
  let oauthUp: RecordingUpstream;
  let staticUp: RecordingUpstream;
  let gw: Gateway;
  let caller: string;
  let refuseNext = false;

  before(async () => {
    [oidc, issuer, staticUp] = await Promise.all([startOidcProvider(), startTestIssuer(), startRecordingUpstream()]);
    oauthUp = await startRecordingUpstream({
      requireHeader: {
        name: 'authorization',
        check: (v) => {
          if (refuseNext) {
            refuseNext = false;
            return false;
          }
          return v?.startsWith('Bearer ') === true;
        },
      },
    });
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-cred-'));
    writeFileSync(join(dir, 'secret'), 'gateway-secret-0123456789\n');
    writeFileSync(join(dir, 'api-key'), 'key-from-file\n');
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD },
      servers: {
        oauth: {
          upstreams: [
            {
              url: oauthUp.url,
              credentials: { clientCredentials: { tokenUrl: oidc.tokenUrl, clientId: 'gateway', clientSecretFile: join(dir, 'secret'), scope: 'upstream', resource: UPSTREAM_RESOURCE } },
            },
          ],
        },
        fromfile: { upstreams: [{ url: staticUp.url, credentials: { header: 'X-Api-Key', valueFile: join(dir, 'api-key') } }] },
        fromenv: { upstreams: [{ url: staticUp.url, credentials: { prefix: 'Token ', valueEnv: 'UPSTREAM_TOKEN' } }] },
      },
    }, { env: { UPSTREAM_TOKEN: 'token-from-env' } });
    caller = await issuer.sign({ sub: 'alice', aud: AUD });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([oidc?.close(), issuer?.close(), oauthUp?.close(), staticUp?.close()]);
  });

  it('sends a client-credentials token it fetched, cached across requests, never the caller\'s', async () => {
    const url = `${gw.url}/mcp/oauth`;
    const sid = await openSession(url, '2025-11-25', bearer(caller));
    for (let i = 0; i < 3; i++) assert.equal((await post(url, { jsonrpc: '2.0', id: 10 + i, method: 'tools/list' }, { ...bearer(caller), 'mcp-session-id': sid, ...V })).status, 200);
    const seen = oauthUp.requests.map((r) => r.headers.authorization);
    assert.ok(seen.length >= 5);
    assert.equal(new Set(seen).size, 1, 'one token, fetched once');
    const claims = decodeJwt(seen[0]!.slice('Bearer '.length));
    assert.equal(claims.iss, oidc.issuer);
    assert.equal(claims.client_id, 'gateway');
    assert.equal(claims.aud, UPSTREAM_RESOURCE);
    assert.equal(claims.scope, 'upstream');
    for (const r of oauthUp.requests) assert.ok(!JSON.stringify(r.headers).includes(caller));
  });

  it('an upstream 401 is the gateway\'s problem (502), and the next request gets a fresh token', async () => {
    const url = `${gw.url}/mcp/oauth`;
    refuseNext = true;
    const res = await post(url, INIT, bearer(caller));
    assert.equal(res.status, 502, res.text);
    assert.equal((res.json as { error: { data: { code: string } } }).error.data.code, 'MCPGW_ERR_UPSTREAM_CREDENTIALS');
    const before = new Set(oauthUp.requests.map((r) => r.headers.authorization));
    assert.equal((await post(url, INIT, bearer(caller))).status, 200);
    assert.ok(!before.has(oauthUp.requests.at(-1)!.headers.authorization), 'a new token');
  });

  it('sends a static header read from a file or an environment variable', async () => {
    await openSession(`${gw.url}/mcp/fromfile`, '2025-11-25', bearer(caller));
    const fromFile = staticUp.requests.at(-1)!;
    assert.equal(fromFile.headers['x-api-key'], 'key-from-file');
    assert.equal(fromFile.headers.authorization, undefined);
    await openSession(`${gw.url}/mcp/fromenv`, '2025-11-25', bearer(caller));
    assert.equal(staticUp.requests.at(-1)!.headers.authorization, 'Token token-from-env');
  });
});

describe('auth: list filtering on JSON and stdio upstreams, metadata behind a proxy', () => {
  let issuer: TestIssuer;
  let jsonUp: RecordingUpstream;
  let gw: Gateway;
  let token: string;

  before(async () => {
    [issuer, jsonUp] = await Promise.all([startTestIssuer(), startRecordingUpstream({ json: true })]);
    gw = await startGateway({
      listen: { host: '127.0.0.1', port: 0, trustProxy: true },
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD, pathPrefix: '/edge' },
      servers: {
        json: { upstreams: [{ url: jsonUp.url }], auth: { unlisted: 'deny', tools: { echo: {}, 'a*': { claims: { role: 'ops' } } } } },
        stdio: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }], auth: { tools: { whoami: { scopes: ['admin'] } } } },
      },
    });
    token = await issuer.sign({ sub: 'alice', aud: AUD, role: ['dev', 'ops'] });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), jsonUp?.close()]);
  });

  const names = (res: { json?: unknown; text: string }) => ((rpcOf(res as Parameters<typeof rpcOf>[0]).result as { tools: { name: string }[] }).tools).map((t) => t.name).sort();

  it('JSON answers: only allowed tools (unlisted: deny, claim rule on an array claim)', async () => {
    const url = `${gw.url}/mcp/json`;
    const sid = await openSession(url, '2025-11-25', bearer(token));
    const res = await post(url, { jsonrpc: '2.0', id: 'l', method: 'tools/list' }, { ...bearer(token), 'mcp-session-id': sid, ...V });
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(names(res), ['add', 'admin_reset', 'echo']);
    const dev = await issuer.sign({ sub: 'bob', aud: AUD, role: 'dev' });
    const bobSid = await openSession(url, '2025-11-25', bearer(dev));
    assert.deepEqual(names(await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { ...bearer(dev), 'mcp-session-id': bobSid, ...V })), ['echo']);
  });

  it('stdio answers: the hidden tool is gone from the list and answers as unknown', async () => {
    const url = `${gw.url}/mcp/stdio`;
    const sid = await openSession(url, '2025-11-25', bearer(token));
    const h = { ...bearer(token), 'mcp-session-id': sid, ...V };
    const list = names(await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, h));
    assert.ok(list.includes('echo') && !list.includes('whoami'), list.join());
    const call = (name: string) => post(url, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name, arguments: {} } }, h);
    const hidden = rpcOf(await call('whoami'));
    assert.deepEqual(hidden, JSON.parse(JSON.stringify(rpcOf(await call('nothing_here'))).replaceAll('nothing_here', 'whoami')));
  });

  it('metadata and challenges use X-Forwarded-* and the path prefix', async () => {
    const fwd = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'mcp.example.com' };
    const res = await post(`${gw.url}/mcp/json`, INIT, fwd);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/edge/mcp/json"');
    for (const path of ['/.well-known/oauth-protected-resource/edge/mcp/json', '/.well-known/oauth-protected-resource/mcp/json']) {
      const meta = await request(`${gw.url}${path}`, 'GET', fwd);
      assert.equal(meta.status, 200);
      assert.equal((meta.json as { resource: string }).resource, 'https://mcp.example.com/edge/mcp/json');
    }
    const prefixed = await request(`${gw.url}/.well-known/oauth-protected-resource/mcp/json`, 'GET', { ...fwd, 'x-forwarded-prefix': '/other/' });
    assert.equal((prefixed.json as { resource: string }).resource, 'https://mcp.example.com/other/mcp/json');
  });

  it('X-Forwarded-Host and -Prefix that are not a host and a path (or are too long to be) are not used', async () => {
    const table: [string, Record<string, string>, string][] = [
      ['a quote in the host', { 'x-forwarded-host': 'evil.example", error="x' }, 'http://localhost/.well-known/oauth-protected-resource/edge/mcp/json'],
      ['a host past 253 characters', { 'x-forwarded-host': `${'a'.repeat(5_000)}.example` }, 'http://localhost/.well-known/oauth-protected-resource/edge/mcp/json'],
      ['a quote in the prefix', { 'x-forwarded-host': 'mcp.example.com', 'x-forwarded-prefix': '/a", error="x' }, 'http://mcp.example.com/.well-known/oauth-protected-resource/edge/mcp/json'],
      ['a prefix past 256 characters', { 'x-forwarded-host': 'mcp.example.com', 'x-forwarded-prefix': '/a'.repeat(2_000) }, 'http://mcp.example.com/.well-known/oauth-protected-resource/edge/mcp/json'],
    ];
    for (const [name, headers, metadata] of table) {
      const res = await post(`${gw.url}/mcp/json`, INIT, headers);
      assert.equal(res.status, 401, name);
      assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadata}"`, name);
    }
  });
});
