import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { startEraServer, statelessPost, type EraServer } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startOidcProvider, type OidcProvider } from '../helpers/oauth.ts';

const AUD = 'urn:mcpgw:test';
const UPSTREAM_RESOURCE = 'https://upstream.test/mcp';
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

/**
 * A 2026-07-28-only upstream (the era reference server in its own process) behind a resource
 * server's check: only a token of the issuer for itself passes (401 otherwise), and the user
 * `outsider` is turned away (403: valid, but not let in; after 300 ms); every request's headers
 * and body are recorded.
 */
async function guardedProxy(target: string, oidc: OidcProvider) {
  const seen: { headers: IncomingHttpHeaders; body: string }[] = [];
  const to = new URL(target);
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ headers: req.headers, body: body.toString('utf8') });
      const auth = req.headers.authorization;
      const claims = auth?.startsWith('Bearer ') ? decodeJwt(auth.slice(7)) : undefined;
      if (claims?.iss !== oidc.issuer || claims.aud !== UPSTREAM_RESOURCE) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' }).end('{"error":"unauthorized"}');
        return;
      }
      if (claims.sub === 'outsider') {
        // A while: long enough for another caller to come while the refusal is on its way.
        setTimeout(() => res.writeHead(403, { 'content-type': 'application/json' }).end('{"error":"forbidden"}'), 300);
        return;
      }
      const headers = { ...req.headers, host: to.host };
      const out = httpRequest({ host: to.hostname, port: to.port, path: to.pathname, method: req.method, headers }, (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      out.on('error', () => res.destroy());
      out.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    seen,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('auth: token exchange for a session-era client translated to a 2026-07-28-only upstream', () => {
  let oidc: OidcProvider;
  let era: EraServer;
  let proxy: Awaited<ReturnType<typeof guardedProxy>>;
  let gw: Gateway;
  let dir: string;

  before(async () => {
    oidc = await startOidcProvider();
    era = await startEraServer('stateless');
    proxy = await guardedProxy(era.url, oidc);
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-exchange-translated-'));
    writeFileSync(join(dir, 'secret'), 'gateway-secret-0123456789\n');
    const credentials = { tokenExchange: { tokenUrl: oidc.tokenUrl, clientId: 'gateway', clientSecretFile: join(dir, 'secret'), scope: 'upstream', resource: UPSTREAM_RESOURCE } };
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: oidc.issuer, jwksUri: oidc.jwksUri, algorithms: ['RS256'] }], audience: AUD },
      servers: {
        modern: { era: 'stateless', upstreams: [{ url: proxy.url, credentials }] },
        // era: auto — the gateway asks the upstream its era, on behalf of the caller whose request needs to know.
        probed: { upstreams: [{ url: proxy.url, credentials }] },
        probedFirstByOutsider: { upstreams: [{ url: proxy.url, credentials }] },
        probedBeside: { upstreams: [{ url: proxy.url, credentials }] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await proxy?.close();
    await era?.stop();
    await oidc?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const callerToken = (client: 'reader' | 'admin') => oidc.token(client, 'mcp tools:read', AUD);

  /** Every request since `from` reached the upstream on an exchanged token for `sub`, and none carried `caller`. */
  function assertExchangedFor(from: number, sub: string, caller: string): void {
    const seen = proxy.seen.slice(from);
    assert.ok(seen.length > 0);
    for (const r of seen) {
      assert.ok(r.headers.authorization, 'every request carries a token');
      const claims = decodeJwt(r.headers.authorization.slice('Bearer '.length));
      assert.equal(claims.sub, sub);
      assert.equal(claims.aud, UPSTREAM_RESOURCE);
      assert.ok(!JSON.stringify(r.headers).includes(caller) && !r.body.includes(caller), "the caller's own token never reaches the upstream");
    }
  }

  it("an SDK 1.x client's session (initialize, its GET stream's listen, list, call, an input_required round) goes upstream on the caller's exchanged token", async () => {
    const caller = await callerToken('reader');
    const from = proxy.seen.length;
    const { client, close } = await connectClient(`${gw.url}/mcp/modern`, { headers: bearer(caller), name: 'Ada' });
    try {
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === 'test_simple_text'));
      assert.equal(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })), 'This is a simple text response for testing.');
      // The call retried with the client's answers is a request of the gateway's own, for the same caller.
      assert.equal(textOf(await client.callTool({ name: 'test_input_required_result_elicitation', arguments: {} })), 'Hello, Ada!');
    } finally {
      await close();
    }
    assertExchangedFor(from, 'reader', caller);
    const methods = proxy.seen.slice(from).map((r) => (JSON.parse(r.body) as { method?: string }).method);
    for (const m of ['server/discover', 'tools/list', 'tools/call', 'subscriptions/listen']) assert.ok(methods.includes(m), `${m} went upstream`);
  });

  it('era: auto asks the upstream on behalf of the caller whose request needs to know, with their exchanged token; the answer serves every caller', async () => {
    const [reader, admin] = await Promise.all([callerToken('reader'), callerToken('admin')]);
    const from = proxy.seen.length;
    const { client, close } = await connectClient(`${gw.url}/mcp/probed`, { headers: bearer(admin) });
    try {
      assert.equal(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })), 'This is a simple text response for testing.');
    } finally {
      await close();
    }
    assertExchangedFor(from, 'admin', admin);
    assert.ok(proxy.seen.slice(from).some((r) => r.body.includes('"initialize"')), 'the probe asked whether the upstream answers initialize');
    // Known now: another caller's 2026-07-28 request is forwarded on its own exchanged token, with no probe of its own.
    const next = proxy.seen.length;
    const res = await statelessPost(`${gw.url}/mcp/probed`, 'tools/list', {}, { headers: bearer(reader) });
    assert.equal(res.status, 200, res.text);
    assert.equal(proxy.seen.length - next, 1);
    assertExchangedFor(next, 'reader', reader);
  });

  it("era: auto asked for a caller the upstream turns away (403) learns nothing: the server's era is not what one caller is refused", async () => {
    const [outsider, reader] = await Promise.all([oidc.token('outsider', 'tools:read', AUD), callerToken('reader')]);
    const refused = await statelessPost(`${gw.url}/mcp/probedFirstByOutsider`, 'tools/list', {}, { headers: bearer(outsider) });
    assert.equal(refused.status, 403, refused.text);
    // Another caller's session-era client is still translated to the 2026-07-28-only upstream.
    const { client, close } = await connectClient(`${gw.url}/mcp/probedFirstByOutsider`, { headers: bearer(reader) });
    try {
      assert.equal(textOf(await client.callTool({ name: 'test_simple_text', arguments: {} })), 'This is a simple text response for testing.');
    } finally {
      await close();
    }
    const res = await statelessPost(`${gw.url}/mcp/probedFirstByOutsider`, 'tools/list', {}, { headers: bearer(reader) });
    assert.equal(res.status, 200, res.text);
  });

  it("a caller waiting on the era probe of a caller the upstream turns away asks for itself instead of taking that refusal", async () => {
    const [outsider, reader] = await Promise.all([oidc.token('outsider', 'tools:read', AUD), callerToken('reader')]);
    const refused = statelessPost(`${gw.url}/mcp/probedBeside`, 'tools/list', {}, { headers: bearer(outsider) });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const res = await statelessPost(`${gw.url}/mcp/probedBeside`, 'tools/list', {}, { headers: bearer(reader) });
    assert.equal(res.status, 200, res.text);
    assert.equal((await refused).status, 403);
  });
});
