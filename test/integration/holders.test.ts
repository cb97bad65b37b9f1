import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { meta, statelessHeaders } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { LegacyStream } from '../helpers/legacy.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { INIT, post, request } from '../helpers/raw.ts';
import { startRecordingSseUpstream, type RecordingSseUpstream } from '../helpers/recording-sse-upstream.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { DEMO_SERVER } from '../helpers/upstream.ts';

/**
 * What a caller can make the gateway hold — stdio children, 2024-11-05 SSE connections, pooled
 * upstream sessions — is taken before anything is awaited (so concurrent requests cannot all pass
 * one check), and capped per caller (so one caller cannot fill a server for everyone).
 */

/** The demo children this test process runs now (in-process gateways spawn them as our children). */
function demoChildren(): number {
  const out = execFileSync('ps', ['--ppid', String(process.pid), '-o', 'args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes(DEMO_SERVER)).length;
}

async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const LEGACY_INIT = { jsonrpc: '2.0', id: 'init', method: 'initialize', params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'race', version: '1' } } };

async function legacyEndpoint(gwUrl: string, server: string, headers: Record<string, string> = {}): Promise<{ stream: LegacyStream; endpoint: string }> {
  const stream = await LegacyStream.open(`${gwUrl}/mcp/${server}/sse`, headers);
  if (stream.status !== 200) throw new Error(`GET /sse: ${stream.status}`);
  await stream.until((events) => events.some((e) => e.event === 'endpoint'));
  return { stream, endpoint: stream.endpoint(`${gwUrl}/mcp/${server}/sse`) };
}

describe('holders: concurrent initialize on one 2024-11-05 session', () => {
  let redis: RedisServer;
  let gws: Gateway[] = [];
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await Promise.all(gws.map((g) => g.close()));
    await redis?.stop();
  });

  for (const store of ['memory', 'redis'] as const) {
    it(`${store}: eight at once start one child; the other seven are refused, and the cap holds`, async () => {
      const doc = { ...(store === 'redis' ? { redis: { url: redis.url } } : {}), servers: { demo: { upstreams: [{ command: process.execPath, args: [DEMO_SERVER] }], maxProcesses: 4 } } };
      // With Redis the eight land on two replicas, as behind a load balancer.
      const replicas = store === 'redis' ? await Promise.all([startGateway(doc), startGateway(doc)]) : [await startGateway(doc)];
      gws.push(...replicas);
      // Ready: connected to Redis.
      for (const g of replicas) {
        for (let i = 0; (await fetch(`${g.url}/readyz`)).status !== 200; i++) {
          if (i > 100) throw new Error('never ready');
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const before = demoChildren();
      const { stream, endpoint } = await legacyEndpoint(replicas[0]!.url, 'demo');
      try {
        const path = new URL(endpoint).pathname + new URL(endpoint).search;
        const results = await Promise.all(Array.from({ length: 8 }, (_, i) => request(`${replicas[i % replicas.length]!.url}${path}`, 'POST', { 'content-type': 'application/json' }, JSON.stringify(LEGACY_INIT))));
        const accepted = results.filter((r) => r.status === 202);
        assert.equal(accepted.length, 1, results.map((r) => `${r.status} ${r.text}`).join('\n'));
        for (const r of results.filter((x) => x.status !== 202)) {
          assert.equal(r.status, 400, r.text);
          assert.equal((r.json as { error: { data: { code: string } } }).error.data.code, 'MCPGW_ERR_ALREADY_INITIALIZED');
        }
        await stream.until((events) => events.some((e) => e.message?.id === 'init'));
        // Give any stray child time to show up.
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(demoChildren() - before, 1, 'one child for one session');
      } finally {
        stream.drop();
        await Promise.all(replicas.map((g) => g.close()));
        gws = gws.filter((g) => !replicas.includes(g));
      }
      await until(() => demoChildren() === before);
    });
  }
});

describe('holders: per-caller caps', () => {
  let issuer: TestIssuer;
  let sse: RecordingSseUpstream;
  let http: RecordingUpstream;
  let gw: Gateway;
  const PUBLIC = 'https://gateway.test';

  before(async () => {
    [issuer, sse, http] = await Promise.all([startTestIssuer(), startRecordingSseUpstream(), startRecordingUpstream({ json: true })]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], publicUrl: PUBLIC },
      translation: { maxSessions: 4, sessionsPerCaller: 2 },
      servers: {
        demo: { upstreams: [{ command: process.execPath, args: [DEMO_SERVER] }], maxProcesses: 4, maxSessionsPerCaller: 2 },
        old: { upstreams: [{ url: sse.url, transport: 'sse' }], maxSessionsPerCaller: 2 },
        api: { era: 'session', upstreams: [{ url: http.url }] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), sse?.close(), http?.close()]);
  });

  const bearer = async (sub: string, server: string) => ({ authorization: `Bearer ${await issuer.sign({ sub, aud: `${PUBLIC}/mcp/${server}`, scope: 'mcp' })}` });

  for (const server of ['demo', 'old']) {
    it(`${server}: past maxSessionsPerCaller a caller's own idle session makes room, busy ones get 429; another caller is not affected`, async () => {
      const url = `${gw.url}/mcp/${server}`;
      const a = await bearer('alice', server);
      const b = await bearer('bob', server);
      const open = async (h: Record<string, string>) => {
        const res = await post(url, INIT, h);
        assert.equal(res.status, 200, res.text);
        return res.headers.get('mcp-session-id')!;
      };
      const ping = (sid: string) => post(url, { jsonrpc: '2.0', id: 2, method: 'ping' }, { ...a, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });
      // A session with its GET stream open is busy.
      const busy = async (sid: string) => {
        const abort = new AbortController();
        const res = await fetch(url, { headers: { ...a, accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, signal: abort.signal });
        assert.equal(res.status, 200);
        return abort;
      };
      const first = await open(a);
      const second = await open(a);
      const streams = [await busy(second)];
      // At the cap: the idle first session makes room, the busy second lives on.
      const third = await open(a);
      assert.equal((await ping(first)).status, 404, 'the idle session was ended');
      assert.equal((await ping(second)).status, 200, 'the busy one was not');
      // Both busy: refused.
      streams.push(await busy(third));
      const fourth = await post(url, INIT, a);
      assert.equal(fourth.status, 429, fourth.text);
      assert.equal((fourth.json as { error: { data: { code: string } } }).error.data.code, 'MCPGW_ERR_CALLER_CAPACITY');
      await open(b);
      for (const s of streams) s.abort();
    });
  }

  it('2024-11-05: one caller opens maxSessionsPerCaller streams (even at once), then 429; another caller still opens one', async () => {
    const a = await bearer('alice', 'old');
    const b = await bearer('bob', 'old');
    const streams = await Promise.all(Array.from({ length: 5 }, () => LegacyStream.open(`${gw.url}/mcp/old/sse`, a)));
    try {
      assert.deepEqual(streams.map((s) => s.status).sort(), [200, 200, 429, 429, 429]);
      const theirs = await LegacyStream.open(`${gw.url}/mcp/old/sse`, b);
      assert.equal(theirs.status, 200, 'another caller is not affected');
      theirs.drop();
    } finally {
      for (const s of streams) s.drop();
    }
  });

  it('2026-07-28: ten concurrent requests of one caller with the same capabilities open one pooled upstream session', async () => {
    const url = `${gw.url}/mcp/api`;
    const initializes = () => http.requests.filter((r) => r.method === 'POST' && r.body.includes('"initialize"') && r.body.includes('carol-client')).length;
    const headers = await bearer('carol', 'api');
    const params = { name: 'echo', arguments: { text: 'c' }, _meta: meta({}, { 'io.modelcontextprotocol/clientInfo': { name: 'carol-client', version: '1' } }) };
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => request(url, 'POST', { ...headers, ...statelessHeaders('tools/call', params) }, JSON.stringify({ jsonrpc: '2.0', id: i + 1, method: 'tools/call', params }))),
    );
    for (const r of results) assert.equal(r.status, 200, r.text);
    assert.equal(initializes(), 1);
  });

  it('2026-07-28: a caller declaring ever new capabilities replaces only its own pooled sessions', async () => {
    await assertOnlyOwnReplaced(`${gw.url}/mcp/api`, http, (who) => bearer(who, 'api'));
  });
});

describe('holders: pooled upstream sessions of 2026-07-28 callers with auth off (callers are addresses)', () => {
  let http: RecordingUpstream;
  let gw: Gateway;

  before(async () => {
    http = await startRecordingUpstream({ json: true });
    gw = await startGateway({
      // This test's client plays the proxy: it connects from loopback and names the address it saw.
      listen: { host: '127.0.0.1', port: 0, trustProxy: ['loopback'] },
      translation: { maxSessions: 40, sessionsPerCaller: 2 },
      servers: { api: { era: 'session', upstreams: [{ url: http.url }] } },
    });
  });
  after(async () => {
    await gw?.close();
    await http?.close();
  });

  it('a caller declaring ever new capabilities replaces only its own pooled sessions, not those of a caller at another address', async () => {
    const addresses = { bob: '198.51.100.1', mallory: '198.51.100.66' };
    await assertOnlyOwnReplaced(`${gw.url}/mcp/api`, http, async (who) => ({ 'x-forwarded-for': addresses[who] }));
  });
});

/** Bob's pooled upstream session outlives mallory's calls, each declaring new capabilities; `as` names the caller of a request. */
async function assertOnlyOwnReplaced(url: string, http: RecordingUpstream, as: (who: 'bob' | 'mallory') => Promise<Record<string, string>>): Promise<void> {
  const initializes = () => http.requests.filter((r) => r.method === 'POST' && r.body.includes('"initialize"') && r.body.includes('bob-client')).length;
  const call = async (who: 'bob' | 'mallory', capabilities: Record<string, unknown>) => {
    const params = { name: 'echo', arguments: { text: who }, _meta: meta(capabilities, { 'io.modelcontextprotocol/clientInfo': { name: `${who}-client`, version: '1' } }) };
    const res = await request(url, 'POST', { ...(await as(who)), ...statelessHeaders('tools/call', params) }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params }));
    assert.equal(res.status, 200, res.text);
  };
  const before = initializes();
  await call('bob', {});
  assert.equal(initializes() - before, 1);
  for (let i = 0; i < 10; i++) await call('mallory', { experimental: { [`variant${i}`]: {} } });
  await call('bob', {});
  assert.equal(initializes() - before, 1, "bob's pooled session was not ended by mallory's");
}
