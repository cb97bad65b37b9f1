import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LoggingMessageNotificationSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { demoServerPath } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { connectLegacyClient, initializeLegacy, LEGACY_REVISION, LegacyStream, postMessage, type LegacyEvent } from '../helpers/legacy.ts';
import { openSession } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { slowCount } from '../helpers/sse.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

type Client = Awaited<ReturnType<typeof connectClient>>['client'];

/** Until the replica is ready (Redis connected), as a load balancer would wait. */
async function ready(gw: Gateway): Promise<void> {
  for (let i = 0; i < 100 && (await fetch(`${gw.url}/readyz`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 50));
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const progressOf = (events: readonly LegacyEvent[]) => events.filter((e) => e.message?.method === 'notifications/progress').map((e) => e.message!.params!.progress!);
const answerTo = (id: unknown) => (events: readonly LegacyEvent[]) => events.some((e) => e.message?.id === id && e.message?.method === undefined);

/**
 * What reaches the client's transport from now on, in order. Progress is checked here, not with
 * `onprogress`: the SDK runs a progress callback a microtask after reading the notification but
 * drops the request's callback as soon as it reads the result, so every notification that reaches
 * the client in the same read as the result is lost to `onprogress` (typescript-sdk#2580) — on a
 * loaded machine a stall of one delay joins progress 3, 4 and the result in one chunk.
 */
function received(client: Client): JSONRPCMessage[] {
  const transport = client.transport!;
  const messages: JSONRPCMessage[] = [];
  const handle = transport.onmessage;
  transport.onmessage = (message, extra) => {
    messages.push(message);
    handle?.(message, extra);
  };
  return messages;
}

/** What every client of every era must be able to do with the demo server, whatever is in between. */
async function exercise(client: Client): Promise<void> {
  assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'old and new' } })), 'old and new');
  const wire = received(client);
  // A callback, so that the call asks for progress.
  const counted = await client.callTool({ name: 'slow_count', arguments: { count: 4, delayMs: 30 } }, undefined, { onprogress: () => {} });
  assert.equal(textOf(counted), 'counted to 4');
  // Every progress notification, in order, before the result.
  const progress = wire.flatMap((m) => ('method' in m && m.method === 'notifications/progress' ? [m.params!.progress] : []));
  assert.deepEqual(progress, [1, 2, 3, 4]);
  assert.ok('result' in wire.at(-1)!, 'the result comes last');
  assert.equal(textOf(await client.callTool({ name: 'ask_name', arguments: {} })), 'Hello, Ada!', 'a server→client request and its answer');
  const logs: unknown[] = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push(n.params.data));
  await client.callTool({ name: 'announce', arguments: { text: 'to everyone' } });
  for (let i = 0; i < 50 && logs.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(logs, ['to everyone'], 'a notification outside any request');
  assert.ok((await client.listTools()).tools.some((t) => t.name === 'whoami'));
}

describe('2024-11-05 HTTP+SSE: old clients and legacy upstreams through the gateway', () => {
  let http: HttpUpstreamProcess;
  let legacy: HttpUpstreamProcess;
  let gw: Gateway;
  before(async () => {
    [http, legacy] = await Promise.all([startDemoUpstream('h'), startDemoUpstream('s', 0, { transport: 'sse' })]);
    gw = await startGateway({
      servers: {
        http: { upstreams: [{ url: http.url }] },
        stdio: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] },
        old: { upstreams: [{ url: legacy.url, transport: 'sse' }] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([http?.stop(), legacy?.stop()]);
  });

  for (const server of ['http', 'stdio', 'old']) {
    it(`an old SDK client (SSEClientTransport, 2024-11-05) uses a ${server} upstream`, async () => {
      const { client, close } = await connectLegacyClient(`${gw.url}/mcp/${server}/sse`);
      try {
        assert.equal(client.getServerVersion()?.name, 'mcp-gateway-demo');
        await exercise(client);
      } finally {
        await close();
      }
    });
  }

  it('a Streamable HTTP client (2025-11-25) uses a legacy SSE upstream', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/old`);
    try {
      await exercise(client);
    } finally {
      await close();
    }
  });

  it('speaks the 2024-11-05 wire format: endpoint first, then every answer on the stream with an id', async () => {
    const stream = await LegacyStream.open(`${gw.url}/mcp/http/sse`);
    assert.equal(stream.status, 200);
    await stream.until((events) => events.length > 0);
    const first = stream.events[0]!;
    assert.equal(first.event, 'endpoint');
    assert.match(first.data, /^messages\?sessionId=[A-Za-z0-9_-]+$/);
    const endpoint = stream.endpoint(`${gw.url}/mcp/http/sse`);
    assert.equal(new URL(endpoint).pathname, '/mcp/http/messages');
    await initializeLegacy(stream, endpoint);
    const init = stream.events.find((e) => e.message?.id === 'init')!;
    assert.equal((init.message!.result as { protocolVersion: string }).protocolVersion, LEGACY_REVISION);
    assert.equal((await postMessage(endpoint, slowCount(5, 3, 5))).status, 202);
    const events = await stream.until(answerTo(5));
    assert.deepEqual(progressOf(events), [1, 2, 3]);
    const sid = new URL(endpoint).searchParams.get('sessionId')!;
    const messages = events.filter((e) => e.event !== 'endpoint');
    const seqs = messages.map((e) => {
      assert.ok(e.id?.startsWith(`${sid}.`), `id ${e.id}`);
      return Number(e.id!.slice(sid.length + 1));
    });
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
      'ids increase',
    );
    assert.equal(new Set(seqs).size, seqs.length, 'ids are unique');
    stream.drop();
  });

  it('refuses messages it cannot route', async () => {
    const stream = await LegacyStream.open(`${gw.url}/mcp/http/sse`);
    await stream.until((events) => events.length > 0);
    const endpoint = stream.endpoint(`${gw.url}/mcp/http/sse`);
    const streamable = await openSession(`${gw.url}/mcp/http`);
    const call = { jsonrpc: '2.0', id: 1, method: 'tools/list' };
    const table: [string, number, string][] = [
      [endpoint, 400, 'MCPGW_ERR_NOT_INITIALIZED'],
      [`${gw.url}/mcp/http/messages`, 400, 'MCPGW_ERR_SESSION_REQUIRED'],
      [`${gw.url}/mcp/http/messages?sessionId=garbage`, 404, 'MCPGW_ERR_SESSION_NOT_FOUND'],
      [`${gw.url}/mcp/http/messages?sessionId=${streamable}`, 404, 'MCPGW_ERR_SESSION_NOT_FOUND'],
      [endpoint.replace('/mcp/http/', '/mcp/stdio/'), 404, 'MCPGW_ERR_SESSION_NOT_FOUND'],
      [`${gw.url}/mcp/nope/messages?sessionId=x`, 404, 'MCPGW_ERR_UNKNOWN_SERVER'],
    ];
    for (const [url, status, code] of table) {
      const res = await postMessage(url, call);
      assert.equal(res.status, status, `${url}: ${res.text}`);
      assert.equal((JSON.parse(res.text) as { error: { data: { code: string } } }).error.data.code, code, url);
    }
    const gone = await fetch(`${gw.url}/mcp/http/sse`, { headers: { accept: 'text/event-stream', 'last-event-id': 'nothing.3' } });
    assert.equal(gone.status, 404, 'an id naming no session of this gateway');
    stream.drop();
  });
});

describe('2024-11-05 HTTP+SSE across two gateway replicas sharing Redis', () => {
  let redis: RedisServer;
  let upstream: HttpUpstreamProcess;
  let a: Gateway;
  let b: Gateway;
  before(async () => {
    [redis, upstream] = await Promise.all([startRedis(), startDemoUpstream('u')]);
    const doc = { redis: { url: redis.url }, events: { detachedGrace: '300ms' }, servers: { api: { upstreams: [{ url: upstream.url }] } } };
    [a, b] = await Promise.all([startGateway(doc), startGateway(doc)]);
    await Promise.all([ready(a), ready(b)]);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await Promise.all([upstream?.stop(), redis?.stop()]);
  });

  it('a stream read on A, messages posted to B, resumed on B with Last-Event-ID: every event once, in order', async () => {
    const first = await LegacyStream.open(`${a.url}/mcp/api/sse`);
    await first.until((events) => events.length > 0);
    const onB = first.endpoint(`${b.url}/mcp/api/sse`);
    assert.ok(onB.startsWith(b.url));
    await initializeLegacy(first, onB);
    assert.equal((await postMessage(onB, slowCount(7, 20, 25))).status, 202);
    const seen = await first.until((events) => progressOf(events).length >= 5);
    first.drop();
    const last = seen.at(-1)!.id!;
    assert.deepEqual(progressOf(seen), range(1, progressOf(seen).length));

    await new Promise((r) => setTimeout(r, 100)); // B keeps logging meanwhile
    const again = await LegacyStream.open(`${b.url}/mcp/api/sse`, { 'last-event-id': last });
    assert.equal(again.status, 200);
    const rest = await again.until(answerTo(7));
    assert.equal(rest[0]!.event, 'endpoint', 'a resumed stream names its endpoint again');
    assert.equal(rest[0]!.data, seen[0]!.data, 'the same session');
    assert.deepEqual([...progressOf(seen), ...progressOf(rest)], range(1, 20));
    const ids = [...seen, ...rest].map((e) => e.id).filter(Boolean);
    assert.equal(new Set(ids).size, ids.length, 'no event twice');
    // The session goes on, on whichever replica.
    assert.equal((await postMessage(onB.replace(b.url, a.url), { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'echo', arguments: { text: 'after' } } })).status, 202);
    const after = await again.until(answerTo(8));
    assert.match(JSON.stringify(after.find((e) => e.message?.id === 8)!.message), /after/);
    again.drop();
  });

  it('an old SDK client whose stream is on A and whose messages alternate between A and B works end to end', async () => {
    let turn = 0;
    const replicas = [a.url, b.url];
    const alternating: typeof fetch = (input, init) => {
      const target = new URL(String(input instanceof Request ? input.url : input));
      if (init?.method === 'POST') target.host = new URL(replicas[turn++ % 2]!).host;
      return fetch(target, init);
    };
    const { client, close } = await connectLegacyClient(`${a.url}/mcp/api/sse`, { fetch: alternating });
    try {
      await exercise(client);
      assert.ok(turn >= 8, `messages alternated (${turn})`);
    } finally {
      await close();
    }
  });

  it('the session follows its client: notifications reach it on B once A let go, and it ends when nobody reads it', async () => {
    const first = await LegacyStream.open(`${a.url}/mcp/api/sse`);
    await first.until((events) => events.length > 0);
    const endpoint = first.endpoint(`${a.url}/mcp/api/sse`);
    await initializeLegacy(first, endpoint);
    first.drop();
    const again = await LegacyStream.open(`${b.url}/mcp/api/sse`, { 'last-event-id': first.events.at(-1)!.id! });
    await new Promise((r) => setTimeout(r, 1_500)); // A lets go after events.detachedGrace; B takes over
    const announce = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'announce', arguments: { text: 'from the new owner' } } };
    assert.equal((await postMessage(endpoint, announce)).status, 202);
    const events = await again.until((all) => all.some((e) => e.message?.method === 'notifications/message'));
    assert.ok(answerTo(2)(events));
    again.drop();
    // Nobody reads the session any more: after the grace periods (300 ms, then 5 s) it ends on every replica.
    let late = { status: 0, text: '' };
    for (let i = 0; i < 40 && late.status !== 404; i++) {
      await new Promise((r) => setTimeout(r, 250));
      late = await postMessage(endpoint.replace(a.url, b.url), { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 0 } });
    }
    assert.equal(late.status, 404, late.text);
  });

  it('the replica a session lived on goes away: the one its client resumes on takes the session over, upstream stream included', async () => {
    const c = await startGateway({ redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
    await ready(c);
    const first = await LegacyStream.open(`${c.url}/mcp/api/sse`);
    await first.until((events) => events.length > 0);
    const onB = first.endpoint(`${b.url}/mcp/api/sse`);
    await initializeLegacy(first, onB);
    await c.close();
    const again = await LegacyStream.open(`${b.url}/mcp/api/sse`, { 'last-event-id': first.events.at(-1)!.id! });
    assert.equal(again.status, 200);
    await new Promise((r) => setTimeout(r, 1_200)); // the upstream notifies while the session changes hands
    const announce = { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'announce', arguments: { text: 'still there' } } };
    assert.equal((await postMessage(onB, announce)).status, 202);
    const events = await again.until((all) => all.some((e) => e.message?.method === 'notifications/message'));
    assert.match(JSON.stringify(events.find((e) => e.message?.method === 'notifications/message')!.message), /still there/);
    again.drop();
  });

  it('refuses to resume an id it never issued', async () => {
    const stream = await LegacyStream.open(`${a.url}/mcp/api/sse`);
    await stream.until((events) => events.length > 0);
    const sid = new URL(stream.endpoint(`${a.url}/mcp/api/sse`)).searchParams.get('sessionId')!;
    stream.drop();
    for (const [id, status] of [
      [`${sid}.x`, 410],
      [sid, 410],
      ['garbage.1', 404],
    ] as const) {
      const res = await fetch(`${b.url}/mcp/api/sse`, { headers: { accept: 'text/event-stream', 'last-event-id': id } });
      assert.equal(res.status, status, id);
      await res.body?.cancel();
    }
  });
});

describe('2024-11-05 HTTP+SSE with auth', () => {
  const AUD = 'urn:mcpgw:legacy';
  let issuer: TestIssuer;
  let upstream: HttpUpstreamProcess;
  let gw: Gateway;
  before(async () => {
    [issuer, upstream] = await Promise.all([startTestIssuer(), startDemoUpstream('u')]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD },
      servers: { api: { upstreams: [{ url: upstream.url }], auth: { tools: { whoami: { scopes: ['admin'] } } } } },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), upstream?.stop()]);
  });

  it('authenticates both routes, binds the session to its caller and applies the tool policy', async () => {
    const alice = { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: AUD })}` };
    const mallory = { authorization: `Bearer ${await issuer.sign({ sub: 'mallory', aud: AUD })}` };
    const anonymous = await fetch(`${gw.url}/mcp/api/sse`, { headers: { accept: 'text/event-stream' } });
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer /);

    const stream = await LegacyStream.open(`${gw.url}/mcp/api/sse`, alice);
    assert.equal(stream.status, 200);
    await stream.until((events) => events.length > 0);
    const endpoint = stream.endpoint(`${gw.url}/mcp/api/sse`);
    const list = { jsonrpc: '2.0', id: 'l', method: 'tools/list' };
    assert.equal((await postMessage(endpoint, list)).status, 401, 'no token');
    assert.equal((await postMessage(endpoint, list, mallory)).status, 404, "another caller's session does not exist for them");
    const resumed = await fetch(`${gw.url}/mcp/api/sse`, { headers: { accept: 'text/event-stream', 'last-event-id': `${new URL(endpoint).searchParams.get('sessionId')}.0`, ...mallory } });
    assert.equal(resumed.status, 404, "nor does another caller's stream");

    await initializeLegacy(stream, endpoint, alice);
    assert.equal((await postMessage(endpoint, list, alice)).status, 202);
    const events = await stream.until(answerTo('l'));
    const names = (events.find((e) => e.message?.id === 'l')!.message!.result as { tools: { name: string }[] }).tools.map((t) => t.name);
    assert.ok(names.includes('echo') && !names.includes('whoami'), names.join());
    stream.drop();
  });
});
