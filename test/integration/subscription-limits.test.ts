import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { meta, startEraServer, statelessPost, type EraServer } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { startSubscribeUpstream } from '../helpers/subscribe-upstream.ts';

describe('translation: resource subscriptions are bounded', () => {
  let subscribing: Awaited<ReturnType<typeof startSubscribeUpstream>>;
  let era: EraServer;
  let gw: Gateway;

  before(async () => {
    [subscribing, era] = await Promise.all([startSubscribeUpstream(), startEraServer('stateless')]);
    gw = await startGateway({
      servers: {
        subs: { era: 'session', upstreams: [{ url: subscribing.url }] },
        modern: { era: 'stateless', upstreams: [{ url: era.url }] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await subscribing?.close();
    await era?.stop();
  });

  it('a 2026-07-28 subscriptions/listen naming more resources than a listen may is refused, none subscribed upstream (each would be a request of its own)', async () => {
    const uris = Array.from({ length: 5_000 }, (_, i) => `demo://many/${i}`);
    const res = await statelessPost(`${gw.url}/mcp/subs`, 'subscriptions/listen', { notifications: { resourceSubscriptions: uris }, _meta: meta() }, { signal: AbortSignal.timeout(10_000) }).catch((err: Error) => err);
    const many = () => subscribing.subscribed.filter((u) => u.startsWith('demo://many/')).length;
    assert.ok(!(res instanceof Error), `no answer: ${many()} resources subscribed upstream one by one meanwhile`);
    assert.equal(res.status, 400, res.text.slice(0, 300));
    assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_INVALID_REQUEST');
    assert.match(rpcOf(res).error!.message, /at most 256 resources/);
    assert.equal(many(), 0);
  });

  it('a session-era client translated to a 2026-07-28 upstream subscribes to at most as many resources (each reopens its listen with all of them)', async () => {
    const url = `${gw.url}/mcp/modern`;
    const sid = await openSession(url);
    const subscribe = (i: number) => post(url, { jsonrpc: '2.0', id: i + 10, method: 'resources/subscribe', params: { uri: `demo://many/${i}` } }, sessionHeaders(sid));
    for (let i = 0; i < 256; i++) assert.equal(rpcOf(await subscribe(i)).error, undefined);
    const refused = rpcOf(await subscribe(256));
    assert.equal(refused.error?.data?.code, 'MCPGW_ERR_INVALID_REQUEST');
    assert.match(refused.error!.message, /at most 256 resources/);
    // One already subscribed to is not a new one.
    assert.equal(rpcOf(await subscribe(0)).error, undefined);
  });
});
