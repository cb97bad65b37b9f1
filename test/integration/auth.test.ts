import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient } from '../helpers/client.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startOidcProvider, startTestIssuer, rawJwt, type OidcProvider, type TestIssuer } from '../helpers/oauth.ts';
import { openSession, post, request, rpcOf, type RawResponse } from '../helpers/raw.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';

const PUBLIC = 'https://gateway.test';
const RESOURCE = `${PUBLIC}/mcp/api`;
const METADATA = `${PUBLIC}/.well-known/oauth-protected-resource/mcp/api`;
const V = { 'mcp-protocol-version': '2025-11-25' };
const LIST = { jsonrpc: '2.0', id: 2, method: 'tools/list' };
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const call = (name: string, id = 9) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {} } });

/** The single JSON-RPC message of a response whose `id` is `id` (JSON or SSE). */
function answer(res: RawResponse): { result?: Record<string, unknown>; error?: { code: number; message: string; data?: { code?: string } } } {
  return rpcOf(res) as ReturnType<typeof answer>;
}

describe('auth: OAuth 2.1 resource server (jwt)', () => {
  let oidc: OidcProvider;
  let issuer: TestIssuer;
  let up: RecordingUpstream;
  let gw: Gateway;
  let url: string;
  let auditFile: string;
  let reader: string;
  let admin: string;
  let readerSid: string;

  before(async () => {
    [oidc, issuer, up] = await Promise.all([startOidcProvider(), startTestIssuer(), startRecordingUpstream()]);
    auditFile = join(mkdtempSync(join(tmpdir(), 'mcpgw-audit-')), 'audit.log');
    gw = await startGateway({
      auth: {
        mode: 'jwt',
        issuers: [
          { issuer: oidc.issuer, jwksUri: oidc.jwksUri, algorithms: ['RS256'] },
          { issuer: issuer.issuer, jwksUri: issuer.jwksUri },
        ],
        publicUrl: PUBLIC,
        scopes: ['mcp'],
      },
      audit: { enabled: true, destination: auditFile, redactKeys: ['password', 'token', 'secret', 'api_key'] },
      servers: {
        api: {
          upstreams: [{ url: up.url }],
          auth: {
            tools: { 'admin_*': { scopes: ['admin'] }, secret_report: { claims: { client_id: 'admin' } } },
            resources: { 'demo://secret': { scopes: ['admin'] } },
            prompts: { 'admin_*': { scopes: ['admin'] } },
          },
        },
      },
    });
    url = `${gw.url}/mcp/api`;
    [reader, admin] = await Promise.all([oidc.token('reader', 'mcp tools:read', RESOURCE), oidc.token('admin', 'mcp tools:read admin', RESOURCE)]);
    readerSid = await openSession(url, '2025-11-25', bearer(reader));
  });
  after(async () => {
    await gw?.close();
    await Promise.all([oidc?.close(), issuer?.close(), up?.close()]);
  });

  const asReader = () => ({ ...bearer(reader), 'mcp-session-id': readerSid, ...V });

  it('accepts tokens from a real OAuth server (client_credentials, resource indicator) and serves MCP', async () => {
    const res = await post(url, { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'echo', arguments: { text: 'hi' } } }, asReader());
    assert.equal(res.status, 200, res.text);
    assert.deepEqual((answer(res).result as { content: unknown[] }).content, [{ type: 'text', text: 'hi' }]);
  });

  it('works with the SDK client carrying a token', async () => {
    const c = await connectClient(url, { headers: bearer(admin) });
    try {
      const { tools } = await c.client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ['add', 'admin_reset', 'echo', 'secret_report']);
    } finally {
      await c.close();
    }
  });

  describe('attacks: refused before the upstream sees anything', () => {
    const now = () => Math.floor(Date.now() / 1000);
    const good = () => ({ sub: 'mallory', aud: RESOURCE, scope: 'mcp' });
    const table: [string, () => Promise<Record<string, string>>, number, string, RegExp | null][] = [
      ['no token', async () => ({}), 401, 'MCPGW_ERR_UNAUTHORIZED', /^Bearer resource_metadata="[^"]+", scope="mcp"$/],
      ['another auth scheme', async () => ({ authorization: 'Basic dXNlcjpwYXNz' }), 401, 'MCPGW_ERR_UNAUTHORIZED', /^Bearer resource_metadata="[^"]+", scope="mcp"$/],
      ['malformed token', async () => bearer('not-a-jwt'), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['empty bearer', async () => ({ authorization: 'Bearer ' }), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['bad signature', async () => {
        const t = await issuer.sign(good());
        const [h, p, s] = t.split('.');
        return bearer(`${h}.${p}.${s!.slice(0, -4)}${s!.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`);
      }, 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['payload swapped under a valid signature', async () => {
        const [h, , s] = (await issuer.sign(good())).split('.');
        const p = Buffer.from(JSON.stringify({ ...good(), sub: 'root', iss: issuer.issuer, exp: now() + 300 })).toString('base64url');
        return bearer(`${h}.${p}.${s}`);
      }, 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['unknown kid', async () => {
        const k = await issuer.addKey(false);
        return bearer(await issuer.sign(good(), { key: k.privateKey, kid: k.kid }));
      }, 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['known kid, signed with another key', async () => {
        const k = await issuer.addKey(false);
        return bearer(await issuer.sign(good(), { key: k.privateKey, kid: issuer.kid }));
      }, 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['alg none', async () => bearer(rawJwt({ alg: 'none', typ: 'JWT' }, { ...good(), iss: issuer.issuer, exp: now() + 300 })), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['alg none with a signature part', async () => bearer(rawJwt({ alg: 'none', kid: issuer.kid }, { ...good(), iss: issuer.issuer, exp: now() + 300 }, 'AAAA')), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['HS256 signed with the public key', async () => {
        const pem = issuer.publicKey.export({ type: 'spki', format: 'pem' }) as string;
        const unsigned = rawJwt({ alg: 'HS256', kid: issuer.kid, typ: 'JWT' }, { ...good(), iss: issuer.issuer, exp: now() + 300 }).slice(0, -1);
        return bearer(`${unsigned}.${createHmac('sha256', pem).update(unsigned).digest('base64url')}`);
      }, 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['HS256 signed with the JWK of the public key', async () => {
        const jwk = JSON.stringify(issuer.jwks.keys[0]);
        const unsigned = rawJwt({ alg: 'HS256', kid: issuer.kid }, { ...good(), iss: issuer.issuer, exp: now() + 300 }).slice(0, -1);
        return bearer(`${unsigned}.${createHmac('sha256', jwk).update(unsigned).digest('base64url')}`);
      }, 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['expired', async () => bearer(await issuer.sign({ ...good(), iat: now() - 600, exp: now() - 120 })), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['no exp', async () => bearer(await issuer.sign({ ...good(), exp: undefined })), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['not yet valid', async () => bearer(await issuer.sign({ ...good(), nbf: now() + 120 })), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['wrong issuer (trusted key, untrusted iss)', async () => bearer(await issuer.sign({ ...good(), iss: 'https://evil.example/' })), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['issuer A claimed, signed by issuer B', async () => bearer(await issuer.sign({ ...good(), iss: oidc.issuer }, { alg: 'ES256' })), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['wrong audience', async () => bearer(await issuer.sign({ ...good(), aud: 'https://other.example/mcp' })), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['real token for another resource', async () => bearer(await oidc.token('reader', 'mcp tools:read', 'https://other.example/mcp')), 401, 'MCPGW_ERR_INVALID_TOKEN', /error="invalid_token"/],
      ['missing scope', async () => bearer(await oidc.token('outsider', 'tools:read', RESOURCE)), 403, 'MCPGW_ERR_INSUFFICIENT_SCOPE', /error="insufficient_scope", scope="mcp"/],
      ["another caller's session", async () => bearer(admin), 404, 'MCPGW_ERR_SESSION_NOT_FOUND', null],
      ["another caller's session (same client, other issuer)", async () => bearer(await issuer.sign({ ...good(), sub: 'reader' })), 404, 'MCPGW_ERR_SESSION_NOT_FOUND', null],
    ];
    for (const [name, credentials, status, code, challenge] of table) {
      it(`${name} → ${status} ${code}`, async () => {
        const headers = await credentials();
        const seen = up.requests.length;
        const res = await post(url, LIST, { ...headers, 'mcp-session-id': readerSid, ...V });
        assert.equal(res.status, status, res.text);
        assert.equal(answer(res).error?.data?.code, code);
        const www = res.headers.get('www-authenticate');
        if (challenge) {
          assert.match(www ?? '', challenge);
          assert.ok(www!.includes(`resource_metadata="${METADATA}"`), www!);
        } else {
          assert.equal(www, null);
        }
        assert.equal(up.requests.length, seen, 'the upstream saw the request');
      });
    }

    it('GET and DELETE are checked too', async () => {
      const seen = up.requests.length;
      assert.equal((await request(url, 'GET', { accept: 'text/event-stream', 'mcp-session-id': readerSid })).status, 401);
      assert.equal((await request(url, 'DELETE', { ...bearer(admin), 'mcp-session-id': readerSid })).status, 404);
      assert.equal(up.requests.length, seen);
    });

    it('an unknown server answers 404 before any credential is asked for (the metadata documents name the servers anyway)', async () => {
      // Named like an Object.prototype member, too: not a server either.
      for (const name of ['nope', 'constructor', 'toString', '__proto__']) {
        for (const headers of [{}, bearer(reader)]) {
          const res = await post(`${gw.url}/mcp/${name}`, LIST, headers);
          assert.equal(res.status, 404, name);
          assert.equal(answer(res).error?.data?.code, 'MCPGW_ERR_UNKNOWN_SERVER');
          assert.equal(res.headers.get('www-authenticate'), null);
        }
      }
    });

    it('the session still works for its owner after all that', async () => {
      assert.equal((await post(url, LIST, asReader())).status, 200);
    });
  });

  describe('per-item policy', () => {
    it('tools/list shows only what the caller may use (SSE upstream answer, parsed and re-serialized)', async () => {
      // The upstream answers with SSE, which the guard parses and re-serializes; the gateway then
      // sends a quick single answer as JSON (src/events/hub.ts, relay), so either shape may arrive.
      const res = await post(url, LIST, asReader());
      assert.match(res.headers.get('content-type') ?? '', /text\/event-stream|application\/json/);
      assert.deepEqual(((answer(res).result as { tools: { name: string }[] }).tools).map((t) => t.name).sort(), ['add', 'echo']);
    });

    it('a hidden tool answers exactly like an unknown one, and never runs', async () => {
      const hidden = await post(url, call('admin_reset'), asReader());
      const unknown = await post(url, call('no_such_tool'), asReader());
      assert.equal(hidden.status, unknown.status);
      assert.deepEqual(answer(hidden), JSON.parse(JSON.stringify(answer(unknown)).replaceAll('no_such_tool', 'admin_reset')));
      assert.match(JSON.stringify(answer(hidden)), /admin_reset/);
      assert.doesNotMatch(hidden.text, /mcpgw-hidden/);
      assert.ok(!up.ran.includes('admin_reset'));
      const claimHidden = await post(url, call('secret_report'), asReader());
      assert.deepEqual(answer(claimHidden), JSON.parse(JSON.stringify(answer(unknown)).replaceAll('no_such_tool', 'secret_report')));
      assert.ok(!up.ran.includes('secret_report'));
    });

    it('the admin sees and runs them', async () => {
      const sid = await openSession(url, '2025-11-25', bearer(admin));
      const res = await post(url, call('admin_reset'), { ...bearer(admin), 'mcp-session-id': sid, ...V });
      assert.deepEqual((answer(res).result as { content: unknown[] }).content, [{ type: 'text', text: 'reset done' }]);
      assert.ok(up.ran.includes('admin_reset'));
    });

    it('filters resources/list and prompts/list, hides resources/read and prompts/get', async () => {
      const resources = answer(await post(url, { jsonrpc: '2.0', id: 3, method: 'resources/list' }, asReader())).result as { resources: { uri: string }[] };
      assert.deepEqual(resources.resources.map((r) => r.uri), ['demo://public']);
      const prompts = answer(await post(url, { jsonrpc: '2.0', id: 4, method: 'prompts/list' }, asReader())).result as { prompts: { name: string }[] };
      assert.deepEqual(prompts.prompts.map((p) => p.name), ['greet']);
      const read = (uri: string) => post(url, { jsonrpc: '2.0', id: 6, method: 'resources/read', params: { uri } }, asReader());
      const hidden = answer(await read('demo://secret'));
      const unknown = answer(await read('demo://nope'));
      assert.ok(hidden.error, JSON.stringify(hidden));
      assert.deepEqual(hidden, JSON.parse(JSON.stringify(unknown).replaceAll('demo://nope', 'demo://secret')));
      const get = (name: string) => post(url, { jsonrpc: '2.0', id: 7, method: 'prompts/get', params: { name } }, asReader());
      assert.deepEqual(answer(await get('admin_prompt')), JSON.parse(JSON.stringify(answer(await get('nope'))).replaceAll('nope', 'admin_prompt')));
    });
  });

  it('no Authorization header from a caller ever reached the upstream', () => {
    assert.ok(up.requests.length > 10);
    for (const r of up.requests) {
      assert.equal(r.headers.authorization, undefined, `${r.method} ${r.body}`);
      assert.equal(r.headers.cookie, undefined);
    }
  });

  it('serves RFC 9728 metadata for each server, path-aware', async () => {
    const res = await request(`${gw.url}/.well-known/oauth-protected-resource/mcp/api`, 'GET');
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, {
      resource: RESOURCE,
      authorization_servers: [oidc.issuer, issuer.issuer],
      scopes_supported: ['mcp'],
      bearer_methods_supported: ['header'],
      resource_name: 'MCP server "api"',
    });
    assert.equal((await request(`${gw.url}/.well-known/oauth-protected-resource/mcp/nope`, 'GET')).status, 404);
  });

  it('writes one audit line per MCP request, field by field, with configured keys redacted', async () => {
    const res = await post(
      url,
      { jsonrpc: '2.0', id: 'audit-1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'visible', password: 'hunter2', nested: { api_key: 'k-123', apiKey: 'k-456', Token: 't-789', keep: 'me' } } } },
      { ...asReader(), 'x-request-id': 'req-audit-1' },
    );
    assert.equal(res.status, 200);
    await post(url, call('admin_reset', 10), { ...asReader(), 'x-request-id': 'req-audit-2' });
    await post(url, LIST, { ...bearer('garbage'), 'mcp-session-id': readerSid, 'x-request-id': 'req-audit-3' });
    gw.audit!.flush();
    const lines = await waitForLines(auditFile, ['req-audit-1', 'req-audit-2', 'req-audit-3']);
    const text = readFileSync(auditFile, 'utf8');
    for (const secret of ['hunter2', 'k-123', 'k-456', 't-789', reader]) assert.ok(!text.includes(secret), `${secret} in the audit log`);

    const ok = lines['req-audit-1']!;
    assert.deepEqual(Object.keys(ok), ['time', 'requestId', 'principal', 'server', 'session', 'method', 'name', 'params', 'outcome', 'status', 'error', 'latencyMs']);
    assert.ok(Math.abs(Date.parse(ok.time as string) - Date.now()) < 10_000);
    assert.equal(ok.requestId, 'req-audit-1');
    const { id, ...principal } = ok.principal as { id: unknown };
    assert.match(String(id), /^[A-Za-z0-9_-]{22}$/);
    // oidc-provider writes the client's id into `sub` of a client_credentials token (RFC 9068 §2.2).
    assert.deepEqual(principal, { kind: 'user', issuer: oidc.issuer, subject: 'reader' });
    assert.equal(ok.server, 'api');
    assert.equal(typeof ok.session, 'string');
    assert.equal(ok.method, 'tools/call');
    assert.equal(ok.name, 'echo');
    assert.deepEqual(ok.params, { name: 'echo', arguments: { text: 'visible', password: '[redacted]', nested: { api_key: '[redacted]', apiKey: '[redacted]', Token: '[redacted]', keep: 'me' } } });
    assert.equal(ok.outcome, 'ok');
    assert.equal(ok.status, 200);
    assert.equal(ok.error, null);
    assert.ok(typeof ok.latencyMs === 'number' && ok.latencyMs >= 0);

    const hidden = lines['req-audit-2']!;
    assert.equal(hidden.name, 'admin_reset');
    assert.equal(hidden.outcome, 'denied');

    const refused = lines['req-audit-3']!;
    assert.equal(refused.principal, null);
    assert.equal(refused.status, 401);
    assert.equal(refused.outcome, 'denied');
    assert.equal(refused.error, 'MCPGW_ERR_INVALID_TOKEN');
    assert.equal(refused.method, 'POST');
  });
});

async function waitForLines(file: string, ids: string[]): Promise<Record<string, Record<string, unknown>>> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // not created yet
    }
    const out: Record<string, Record<string, unknown>> = {};
    for (const l of text.split('\n').filter(Boolean)) {
      const v = JSON.parse(l) as Record<string, unknown>;
      if (ids.includes(v.requestId as string)) out[v.requestId as string] = v;
    }
    if (ids.every((id) => out[id]) || Date.now() > deadline) return out;
    await new Promise((r) => setTimeout(r, 25));
  }
}
