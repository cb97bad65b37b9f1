import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { JWTPayload } from 'jose';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { INIT, openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';

/**
 * auth: two callers whose claims once named one principal — a user whose `sub` spells the client
 * marker and that client, a lone surrogate and the U+FFFD UTF-8 writes for it — are two callers
 * everywhere the principal is a key: session binding, rate-limit buckets, private cache entries.
 */
const ping = (id: number) => ({ jsonrpc: '2.0', id, method: 'ping' });
const readMine = { jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri: 'res://mine' } };

describe('auth: one principal per caller', () => {
  let issuer: TestIssuer;
  let up: ScriptedUpstream;
  let gw: Gateway;

  before(async () => {
    [issuer, up] = await Promise.all([startTestIssuer(), startScriptedUpstream()]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: 'mcp' },
      servers: {
        api: { upstreams: [{ url: up.url }] },
        cached: { upstreams: [{ url: up.url }], cache: { ttl: '1m' } },
        limited: { upstreams: [{ url: up.url }], rateLimit: { principal: { requests: 2, per: '1m' } } },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), up?.close()]);
  });

  const table: [string, JWTPayload, JWTPayload][] = [
    ['a user whose sub spells the client prefix, and that client', { sub: 'client_id:svc' }, { client_id: 'svc' }],
    ['a user whose sub is a lone surrogate, and one whose sub is U+FFFD', { sub: 'x\uD800' }, { sub: 'x\uFFFD' }],
  ];
  for (const [name, first, second] of table) {
    describe(name, () => {
      const as = async (claims: JWTPayload) => ({ authorization: `Bearer ${await issuer.sign({ aud: 'mcp', ...claims })}` });

      it("the second cannot use the first's session: 404, upstream untouched", async () => {
        const sid = await openSession(`${gw.url}/mcp/api`, undefined, await as(first));
        assert.equal((await post(`${gw.url}/mcp/api`, ping(2), { ...sessionHeaders(sid), ...(await as(first)) })).status, 200);
        const pings = up.done('ping');
        const res = await post(`${gw.url}/mcp/api`, ping(3), { ...sessionHeaders(sid), ...(await as(second)) });
        assert.equal(res.status, 404, res.text);
        assert.equal(up.done('ping'), pings);
      });

      it("the second does not spend the first's rate-limit bucket", async () => {
        const sid = await openSession(`${gw.url}/mcp/limited`, undefined, await as(first));
        const spent = [];
        for (const id of [2, 3]) spent.push((await post(`${gw.url}/mcp/limited`, ping(id), { ...sessionHeaders(sid), ...(await as(first)) })).status);
        assert.deepEqual(spent, [200, 429], "the first caller's two requests are spent");
        const res = await post(`${gw.url}/mcp/limited`, INIT, await as(second));
        assert.equal(res.status, 200, res.text);
      });

      it("the second is not served the first's private cache entry", async () => {
        const text = async (claims: JWTPayload) => {
          const headers = await as(claims);
          const sid = await openSession(`${gw.url}/mcp/cached`, undefined, headers);
          const res = await post(`${gw.url}/mcp/cached`, readMine, { ...sessionHeaders(sid), ...headers });
          return (rpcOf(res).result as { contents: { text: string }[] }).contents[0]!.text;
        };
        const firsts = await text(first);
        assert.equal(await text(first), firsts, "the first caller's own entry, from the cache");
        assert.notEqual(await text(second), firsts, 'read for the second caller, not from the cache');
      });
    });
  }
});
