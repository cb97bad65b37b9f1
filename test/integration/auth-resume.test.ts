import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { statelessPost } from '../helpers/era.ts';
import { spawnGateway, startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { initializeLegacy, LegacyStream, postMessage } from '../helpers/legacy.ts';
import { startListUpstream, type ListUpstream } from '../helpers/list-upstream.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { openSession } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { postSse, readSse, resumeSse, type SseEvent } from '../helpers/sse.ts';

/**
 * auth: a list answer the gateway has to read from the upstream *again* — its stream broke, or
 * the replica relaying it died and another took it over — is filtered for its caller exactly like
 * an answer read in one go: no hidden tool ever shows through a resumption.
 */

const AUD = 'urn:mcpgw:test';
const VERSION = '2025-11-25';

const authDoc = (issuer: TestIssuer, upstreamUrl: string, server: Record<string, unknown> = {}) => ({
  auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD },
  servers: { api: { upstreams: [{ url: upstreamUrl }], auth: { tools: { 'admin_*': { scopes: ['admin'] } } }, ...server } },
});

const toolNames = (events: SseEvent[]) => {
  const answer = events.find((e) => e.message?.id === 7);
  assert.ok(answer, 'the list answer arrived');
  return ((answer.message!.result as { tools: { name: string }[] }).tools ?? []).map((t) => t.name);
};

describe('auth: a resumed list answer is filtered like any other', () => {
  let issuer: TestIssuer;
  before(async () => {
    issuer = await startTestIssuer();
  });
  after(async () => {
    await issuer?.close();
  });

  it('the upstream stream breaks before the answer: the gateway reads it again and still hides what the caller may not use', async () => {
    const up = await startListUpstream('drop');
    let gw: Gateway | undefined;
    try {
      gw = await startGateway(authDoc(issuer, up.url));
      const url = `${gw.url}/mcp/api`;
      const auth = { authorization: `Bearer ${await issuer.sign({ sub: 'bob', aud: AUD, scope: 'tools' })}` };
      const sid = await openSession(url, VERSION, auth);
      const { res } = await postSse(url, { jsonrpc: '2.0', id: 7, method: 'tools/list' }, { ...auth, 'mcp-session-id': sid, 'mcp-protocol-version': VERSION });
      assert.equal(res.status, 200);
      const events = await readSse(res, (e) => e.message?.id === 7);
      assert.equal(up.resumed, 1, 'the answer came on the upstream resumption');
      assert.deepEqual(toolNames(events), ['echo']);
    } finally {
      await gw?.close();
      await up.close();
    }
  });

  it('the same through the 2024-11-05 transport: the answer read again goes down the session stream filtered', async () => {
    const up = await startListUpstream('drop');
    let gw: Gateway | undefined;
    let stream: LegacyStream | undefined;
    try {
      gw = await startGateway(authDoc(issuer, up.url));
      const auth = { authorization: `Bearer ${await issuer.sign({ sub: 'bob', aud: AUD, scope: 'tools' })}` };
      stream = await LegacyStream.open(`${gw.url}/mcp/api/sse`, auth);
      await stream.until((e) => e.some((x) => x.event === 'endpoint'));
      const endpoint = stream.endpoint(`${gw.url}/mcp/api/sse`);
      await initializeLegacy(stream, endpoint, auth);
      assert.equal((await postMessage(endpoint, { jsonrpc: '2.0', id: 7, method: 'tools/list' }, auth)).status, 202);
      const events = await stream.until((e) => e.some((x) => x.message?.id === 7));
      assert.equal(up.resumed, 1, 'the answer came on the upstream resumption');
      const answer = events.find((x) => x.message?.id === 7)!;
      assert.deepEqual((answer.message!.result as { tools: { name: string }[] }).tools.map((t) => t.name), ['echo']);
    } finally {
      stream?.drop();
      await gw?.close();
      await up.close();
    }
  });

  it('the same for a 2026-07-28 client of a session-era upstream: the translated answer read again is filtered', async () => {
    const up = await startListUpstream('drop');
    let gw: Gateway | undefined;
    try {
      gw = await startGateway(authDoc(issuer, up.url, { era: 'session' }));
      const auth = { authorization: `Bearer ${await issuer.sign({ sub: 'bob', aud: AUD, scope: 'tools' })}` };
      const res = await statelessPost(`${gw.url}/mcp/api`, 'tools/list', {}, { headers: auth, id: 7 });
      assert.equal(res.status, 200, res.text);
      assert.equal(up.resumed, 1, 'the answer came on the upstream resumption');
      assert.match(res.text, /"echo"/);
      assert.doesNotMatch(res.text, /admin_reset/);
    } finally {
      await gw?.close();
      await up.close();
    }
  });

  it('the relaying replica dies: the replica that takes the stream over filters for the same caller', async () => {
    let redis: RedisServer | undefined;
    let up: ListUpstream | undefined;
    let a: GatewayProcess | undefined;
    let b: GatewayProcess | undefined;
    try {
      [redis, up] = await Promise.all([startRedis(), startListUpstream('stall')]);
      const doc = { redis: { url: redis.url }, ...authDoc(issuer, up.url) };
      [a, b] = await Promise.all([spawnGateway(doc), spawnGateway(doc)]);
      const auth = { authorization: `Bearer ${await issuer.sign({ sub: 'bob', aud: AUD, scope: 'tools' })}` };
      const sid = await openSession(`${a.url}/mcp/api`, VERSION, auth);
      const headers = { ...auth, 'mcp-session-id': sid, 'mcp-protocol-version': VERSION };
      const { res, abort } = await postSse(`${a.url}/mcp/api`, { jsonrpc: '2.0', id: 7, method: 'tools/list' }, headers);
      const first = await readSse(res, (e) => e.message?.method === 'notifications/message', abort);
      await a.child.kill('SIGKILL');

      const again = await resumeSse(`${b.url}/mcp/api`, first.at(-1)!.id!, headers);
      assert.equal(again.res.status, 200);
      const rest = await readSse(again.res, (e) => e.message?.id === 7);
      assert.equal(up.resumed, 1, 'B read the answer from the upstream again');
      assert.deepEqual(toolNames(rest), ['echo']);
    } finally {
      await Promise.all([a?.stop(), b?.stop()]);
      await Promise.all([up?.close(), redis?.stop()]);
    }
  });
});
