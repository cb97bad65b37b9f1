import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { demoServerPath } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { connectV2, meta, sseMessages, startEraServer, statelessHeaders, statelessPost, V2026, type EraServer } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { openSession, post, request, rpcOf, type RawResponse } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/**
 * Revision 2026-07-28 end to end: the front door's header, version and method rules, SDK v2
 * clients (and raw ones) against upstreams of both eras, session-era clients of a 2026-07-28-only
 * upstream, cancellation, per-request balancing, subscriptions, auth.
 */

type Rpc = { id?: unknown; result?: Record<string, unknown>; error?: { code: number; message: string; data?: Record<string, unknown> } };
const rpc = (res: RawResponse) => rpcOf(res) as Rpc;

/** Reads an SSE response until `until` says stop; returns the messages seen. */
async function readStream(res: Response, until: (m: Record<string, unknown>, all: Record<string, unknown>[]) => boolean | Promise<boolean>): Promise<Record<string, unknown>[]> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const seen: Record<string, unknown>[] = [];
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return seen;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split('\n\n');
    buffer = events.pop()!;
    for (const e of events) {
      for (const m of sseMessages(e)) {
        seen.push(m);
        if (await until(m, seen)) {
          await reader.cancel().catch(() => {});
          return seen;
        }
      }
    }
  }
}

function openStateless(url: string, method: string, params: Record<string, unknown>, signal: AbortSignal, id: number | string = 1): Promise<Response> {
  const p = { ...params, _meta: { ...meta(), ...(params._meta as Record<string, unknown> | undefined) } };
  return fetch(url, { method: 'POST', signal, headers: { ...statelessHeaders(method, p), 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id, method, params: p }) });
}

async function callText(url: string, name: string, args: Record<string, unknown> = {}): Promise<string> {
  const res = await statelessPost(url, 'tools/call', { name, arguments: args });
  assert.equal(res.status, 200, res.text);
  return textOf(rpc(res).result);
}

async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`never happened: ${what}`);
}

describe('revision 2026-07-28', () => {
  let demo: HttpUpstreamProcess;
  let modernA: EraServer;
  let modernB: EraServer;
  let sessionEra: EraServer;
  let gw: Gateway;
  const at = (server: string) => `${gw.url}/mcp/${server}`;

  before(async () => {
    [demo, modernA, modernB, sessionEra] = await Promise.all([startDemoUpstream('demo'), startEraServer('stateless', 'a'), startEraServer('stateless', 'b'), startEraServer('session')]);
    gw = await startGateway({
      listen: { host: '127.0.0.1', port: 0, allowedOrigins: ['https://app.example.com'] },
      servers: {
        demo: { upstreams: [{ url: demo.url }] },
        stdio: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] },
        modern: { upstreams: [{ url: modernA.url }] },
        pair: { upstreams: [{ url: modernA.url }, { url: modernB.url }] },
        sessions: { upstreams: [{ url: sessionEra.url }] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([demo?.stop(), modernA?.stop(), modernB?.stop(), sessionEra?.stop()]);
  });

  describe('front door rules', () => {
    const LIST = { _meta: meta() };
    const table: [string, () => Promise<RawResponse>, number, number, string][] = [
      ['an unknown version', () => statelessPost(at('demo'), 'tools/list', { _meta: meta({}, { 'io.modelcontextprotocol/protocolVersion': 'v999' }) }, { headers: { 'mcp-protocol-version': 'v999' }, id: 301 }), 400, -32022, 'MCPGW_ERR_UNSUPPORTED_VERSION'],
      ['no _meta', () => statelessPost(at('demo'), 'tools/list', { _meta: undefined }, { id: 101 }), 400, -32602, 'MCPGW_ERR_INVALID_META'],
      ['_meta without clientCapabilities', () => statelessPost(at('demo'), 'tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': V2026 } }, { id: 104 }), 400, -32602, 'MCPGW_ERR_INVALID_META'],
      ['_meta version ≠ header', () => statelessPost(at('demo'), 'tools/list', { _meta: meta({}, { 'io.modelcontextprotocol/protocolVersion': 'v999' }) }, { id: 302 }), 400, -32020, 'MCPGW_ERR_HEADER_MISMATCH'],
      ['Mcp-Method ≠ method', () => statelessPost(at('demo'), 'tools/list', LIST, { headers: { 'mcp-method': 'prompts/list' } }), 400, -32020, 'MCPGW_ERR_HEADER_MISMATCH'],
      ['Mcp-Name ≠ params.name', () => statelessPost(at('demo'), 'tools/call', { name: 'echo', arguments: { text: 'x' } }, { headers: { 'mcp-name': 'add' } }), 400, -32020, 'MCPGW_ERR_HEADER_MISMATCH'],
      ['Mcp-Name ≠ params.uri (2026-07-28 upstream)', () => statelessPost(at('modern'), 'resources/read', { uri: 'test://static-text' }, { headers: { 'mcp-name': 'test://other' } }), 400, -32020, 'MCPGW_ERR_HEADER_MISMATCH'],
      ['no Mcp-Name', () => statelessPost(at('modern'), 'prompts/get', { name: 'test_simple_prompt' }, { headers: { 'mcp-name': '' } }), 400, -32020, 'MCPGW_ERR_HEADER_MISMATCH'],
      ['initialize (removed)', () => statelessPost(at('demo'), 'initialize', LIST, { id: 500 }), 404, -32601, 'MCPGW_ERR_METHOD_NOT_FOUND'],
      ['ping (removed, 2026-07-28 upstream too)', () => statelessPost(at('modern'), 'ping', LIST, { id: 500 }), 404, -32601, 'MCPGW_ERR_METHOD_NOT_FOUND'],
      ['logging/setLevel (removed)', () => statelessPost(at('demo'), 'logging/setLevel', { level: 'info', _meta: meta() }), 404, -32601, 'MCPGW_ERR_METHOD_NOT_FOUND'],
      ['resources/subscribe (removed)', () => statelessPost(at('demo'), 'resources/subscribe', { uri: 'demo://readme', _meta: meta() }), 404, -32601, 'MCPGW_ERR_METHOD_NOT_FOUND'],
      ['an unknown method for a session-era upstream', () => statelessPost(at('demo'), 'unknown/method', LIST, { id: 601 }), 404, -32601, 'MCPGW_ERR_METHOD_NOT_FOUND'],
      ['a batch', () => request(at('demo'), 'POST', statelessHeaders('tools/list'), JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'tools/list', params: LIST }])), 400, -31000, 'MCPGW_ERR_BATCH_NOT_SUPPORTED'],
      ['a response from the client', () => request(at('demo'), 'POST', statelessHeaders('tools/list'), JSON.stringify({ jsonrpc: '2.0', id: 1, result: {} })), 400, -32600, 'MCPGW_ERR_INVALID_REQUEST'],
      ['GET', () => request(at('demo'), 'GET', { accept: 'text/event-stream', 'mcp-protocol-version': V2026 }), 405, -31008, 'MCPGW_ERR_METHOD_NOT_ALLOWED'],
      ['DELETE', () => request(at('modern'), 'DELETE', { 'mcp-protocol-version': V2026 }), 405, -31008, 'MCPGW_ERR_METHOD_NOT_ALLOWED'],
      ['the _meta version without the header', () => post(at('demo'), { jsonrpc: '2.0', id: 7, method: 'tools/list', params: LIST }), 400, -32020, 'MCPGW_ERR_HEADER_MISMATCH'],
      ['a foreign Origin', () => statelessPost(at('demo'), 'tools/list', LIST, { headers: { origin: 'https://evil.example' } }), 403, -31010, 'MCPGW_ERR_FORBIDDEN_ORIGIN'],
      ['an unknown server', () => statelessPost(at('nope'), 'tools/list', LIST), 404, -31009, 'MCPGW_ERR_UNKNOWN_SERVER'],
    ];
    for (const [name, send, status, code, gatewayCode] of table) {
      it(`${name} → ${status} ${code}`, async () => {
        const res = await send();
        assert.equal(res.status, status, res.text);
        const body = rpc(res);
        assert.equal(body.error?.code, code, res.text);
        assert.equal(body.error?.data?.code, gatewayCode);
      });
    }

    it('errors carry the request id; -32022 names what is supported', async () => {
      const res = await statelessPost(at('demo'), 'server/discover', { _meta: meta({}, { 'io.modelcontextprotocol/protocolVersion': 'v999' }) }, { headers: { 'mcp-protocol-version': 'v999' }, id: 'req-301' });
      const body = rpc(res);
      assert.equal(body.id, 'req-301');
      assert.deepEqual(body.error?.data?.supported, [V2026]);
      const refused = await statelessPost(at('demo'), 'tools/list', LIST, { headers: { accept: 'text/html' }, id: 'req-406' });
      assert.equal(refused.status, 406, refused.text);
      assert.equal(rpc(refused).id, 'req-406', 'an Accept refusal carries the id too');
      assert.equal(body.error?.data?.requested, 'v999');
      for (const [method, params] of [['ping', {}], ['tools/list', { _meta: undefined }], ['tools/call', { name: 'echo', _meta: meta({}, { 'io.modelcontextprotocol/protocolVersion': 'v999' }) }]] as const) {
        assert.equal(rpc(await statelessPost(at('demo'), method, params, { id: 42 })).id, 42, method);
      }
    });

    it('GET and DELETE name POST as the allowed method', async () => {
      const res = await request(at('demo'), 'GET', { 'mcp-protocol-version': V2026 });
      assert.equal(res.headers.get('allow'), 'POST');
    });

    it('an unknown method reaches a 2026-07-28 upstream, which answers 404 -32601 itself', async () => {
      const res = await statelessPost(at('modern'), 'unknown/method', { _meta: meta() }, { id: 601 });
      assert.equal(res.status, 404, res.text);
      assert.equal(rpc(res).error?.code, -32601);
      assert.equal(rpc(res).error?.data?.code, undefined, 'the upstream answered, not the gateway');
    });

    it('session-era requests are untouched by these rules', async () => {
      const sid = await openSession(at('demo'));
      const res = await post(at('demo'), { jsonrpc: '2.0', id: 3, method: 'ping' }, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });
      assert.equal(res.status, 200, res.text);
    });
  });

  describe('a 2026-07-28 client (SDK v2)', () => {
    for (const server of ['demo', 'stdio'] as const) {
      it(`reaches a session-era upstream (${server === 'demo' ? 'HTTP' : 'stdio'}) through a pooled upstream session`, async () => {
        const { client, close } = await connectV2(at(server));
        try {
          assert.equal(client.getProtocolEra(), 'modern');
          const tools = await client.listTools();
          assert.ok(tools.tools.some((t) => t.name === 'echo'));
          assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'hi' } })), 'hi');
          // Elicitation on the session becomes an input_required round the SDK answers.
          assert.equal(textOf(await client.callTool({ name: 'ask_name', arguments: {} })), 'Hello, Ada!');
          const progress: number[] = [];
          const counted = await client.callTool({ name: 'slow_count', arguments: { count: 3, delayMs: 10 } }, { onprogress: (p) => void progress.push(p.progress) });
          assert.equal(textOf(counted), 'counted to 3');
          assert.deepEqual(progress, [1, 2, 3]);
          const readme = await client.readResource({ uri: 'demo://readme' });
          assert.match(JSON.stringify(readme.contents), /mcp-gateway demo/);
          const prompt = await client.getPrompt({ name: 'greet', arguments: { name: 'Bo' } });
          assert.match(JSON.stringify(prompt.messages), /greet Bo/);
        } finally {
          await close();
        }
      });
    }

    it('in auto mode finds 2026-07-28 at the gateway even for a session-era upstream', async () => {
      const { client, close } = await connectV2(at('demo'), { mode: 'auto' });
      try {
        assert.equal(client.getProtocolEra(), 'modern');
        assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'auto' } })), 'auto');
      } finally {
        await close();
      }
    });

    it('reaches a 2026-07-28 upstream, forwarded as is (input_required rounds included)', async () => {
      const { client, close } = await connectV2(at('modern'));
      try {
        assert.equal(textOf(await client.callTool({ name: 'test_input_required_result_elicitation', arguments: {} })), 'Hello, Ada!');
        assert.equal(textOf(await client.callTool({ name: 'test_input_required_result_multi_round', arguments: {} })), 'Both rounds done');
        assert.match(textOf(await client.callTool({ name: 'test_input_required_result_sampling', arguments: {} })), /Paris/);
      } finally {
        await close();
      }
    });

    it('translated results carry resultType, caching hints and server identity', async () => {
      const discover = rpc(await statelessPost(at('demo'), 'server/discover', {}));
      assert.deepEqual(discover.result?.supportedVersions, [V2026]);
      assert.equal(discover.result?.resultType, 'complete');
      assert.deepEqual((discover.result?._meta as Record<string, unknown>)['io.modelcontextprotocol/serverInfo'], { name: 'mcp-gateway-demo', version: '1.0.0' });
      const list = rpc(await statelessPost(at('demo'), 'tools/list', {}));
      assert.equal(list.result?.ttlMs, 0);
      assert.equal(list.result?.cacheScope, 'private');
      const missing = rpc(await statelessPost(at('demo'), 'resources/read', { uri: 'demo://nope' }));
      assert.notEqual(missing.error?.code, -32002, 'resource not found is -32602 in 2026-07-28');
    });

    it('input_required through translation: sealed requestState, tamper refused, partial answers re-asked', async () => {
      const asker = { elicitation: {} };
      const first = rpc(await statelessPost(at('demo'), 'tools/call', { name: 'ask_name', arguments: {}, _meta: meta(asker) }, { id: 1 }));
      assert.equal(first.result?.resultType, 'input_required');
      const state = first.result?.requestState as string;
      assert.deepEqual(Object.keys(first.result?.inputRequests as object), ['elicitation']);
      const tampered = await statelessPost(at('demo'), 'tools/call', { name: 'ask_name', arguments: {}, requestState: `${state}x`, inputResponses: {}, _meta: meta(asker) }, { id: 2 });
      assert.equal(tampered.status, 400);
      assert.equal(rpc(tampered).error?.data?.code, 'MCPGW_ERR_REQUEST_STATE');
      const wrongTool = await statelessPost(at('demo'), 'tools/call', { name: 'echo', arguments: { text: 'x' }, requestState: state, inputResponses: {}, _meta: meta(asker) }, { id: 3 });
      assert.equal(rpc(wrongTool).error?.data?.code, 'MCPGW_ERR_REQUEST_STATE', 'a requestState is bound to its request');
      const malformed = await statelessPost(at('demo'), 'tools/call', { name: 'ask_name', arguments: {}, requestState: state, inputResponses: 'x', _meta: meta(asker) }, { id: 31 });
      assert.equal(malformed.status, 400, 'inputResponses must be an object');
      const again = rpc(await statelessPost(at('demo'), 'tools/call', { name: 'ask_name', arguments: {}, requestState: state, inputResponses: { other: { action: 'accept' } }, _meta: meta(asker) }, { id: 4 }));
      assert.equal(again.result?.resultType, 'input_required', 'the missing answer is asked for again (the malformed retry left the call parked)');
      const answer = { action: 'accept', content: { name: 'Cy' } };
      const done = await statelessPost(at('demo'), 'tools/call', { name: 'ask_name', arguments: {}, requestState: again.result?.requestState, inputResponses: { elicitation: answer }, _meta: meta(asker) }, { id: 5 });
      const final = rpc(done);
      assert.equal(final.id, 5);
      assert.equal(textOf(final.result), 'Hello, Cy!');
      const replay = await statelessPost(at('demo'), 'tools/call', { name: 'ask_name', arguments: {}, requestState: again.result?.requestState, inputResponses: { elicitation: answer }, _meta: meta(asker) }, { id: 6 });
      assert.equal(rpc(replay).error?.data?.code, 'MCPGW_ERR_REQUEST_STATE', 'a finished call cannot be replayed');
    });

    it('logs reach the client only when the request asked for a level', async () => {
      const quiet = await statelessPost(at('sessions'), 'tools/call', { name: 'test_tool_with_logging', arguments: {} });
      assert.ok(!quiet.text.includes('notifications/message'), quiet.text);
      const loud = await statelessPost(at('sessions'), 'tools/call', { name: 'test_tool_with_logging', arguments: {}, _meta: meta({}, { 'io.modelcontextprotocol/logLevel': 'debug' }) });
      assert.equal(sseMessages(loud.text).filter((m) => m.method === 'notifications/message').length, 3, loud.text);
    });
  });

  describe('session-era clients of a 2026-07-28-only upstream (the gateway holds the session)', () => {
    it('SDK v1 (2025-11-25): tools, elicitation pushed from input_required, progress, list changes on the GET stream', async () => {
      const { client, close } = await connectClient(at('modern'), { name: 'Ada' });
      try {
        assert.ok((await client.listTools()).tools.some((t) => t.name === 'test_simple_text'));
        assert.equal(textOf(await client.callTool({ name: 'test_input_required_result_elicitation', arguments: {} })), 'Hello, Ada!');
        const progress: number[] = [];
        await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, { onprogress: (p) => void progress.push(p.progress) });
        assert.deepEqual(progress, [0, 50, 100]);
        await client.ping();
        await client.setLoggingLevel('info');
        const changed = new Promise<void>((resolve) => client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve()));
        // Give the client's GET stream (a listen upstream) a moment to open.
        await new Promise((r) => setTimeout(r, 300));
        await client.callTool({ name: 'test_trigger_tool_change', arguments: {} });
        await changed;
      } finally {
        await close();
      }
    });

    for (const version of ['2025-03-26', '2025-06-18'] as const) {
      it(`raw ${version}: initialize answered from server/discover, then calls`, async () => {
        const init = await post(at('modern'), { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
        assert.equal(init.status, 200, init.text);
        const result = rpc(init).result!;
        assert.equal(result.protocolVersion, version);
        assert.deepEqual(result.serverInfo, { name: 'era-reference-stateless', version: '1.0.0' });
        const sid = await openSession(at('modern'), version);
        const h = { 'mcp-session-id': sid, 'mcp-protocol-version': version };
        const call = rpc(await post(at('modern'), { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'test_simple_text', arguments: {} } }, h));
        assert.equal(call.id, 2);
        assert.equal(textOf(call.result), 'This is a simple text response for testing.');
        assert.equal(call.result?.resultType, undefined, 'resultType: complete is not a session-era field');
        const del = await request(at('modern'), 'DELETE', h);
        assert.equal(del.status, 200);
        assert.equal((await post(at('modern'), { jsonrpc: '2.0', id: 3, method: 'ping' }, h)).status, 404, 'DELETE ended it');
      });
    }

    it('a JSON-RPC batch cannot be translated', async () => {
      const sid = await openSession(at('modern'), '2025-03-26');
      const res = await post(at('modern'), [{ jsonrpc: '2.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', id: 2, method: 'ping' }], { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-03-26' });
      assert.equal(res.status, 400);
      assert.equal(rpc(res).error?.data?.code, 'MCPGW_ERR_NOT_TRANSLATABLE');
      const one = await post(at('modern'), [{ jsonrpc: '2.0', method: 'notifications/roots/list_changed' }], { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-03-26' });
      assert.equal(rpc(one).error?.data?.code, 'MCPGW_ERR_NOT_TRANSLATABLE', 'a batch of one is a batch too');
    });
  });

  describe('cancellation and balancing', () => {
    for (const server of ['demo', 'modern'] as const) {
      it(`closing the response cancels the call upstream (${server === 'demo' ? 'session-era: notifications/cancelled' : '2026-07-28: the upstream stream closes'})`, async () => {
        const cancelledSoFar = async () => (JSON.parse(await callText(at(server), 'stats')) as { cancelled: number }).cancelled;
        const before = await cancelledSoFar();
        const abort = new AbortController();
        const res = await openStateless(at(server), 'tools/call', { name: 'slow_count', arguments: { count: 200, delayMs: 20 }, _meta: { progressToken: 'p' } }, abort.signal);
        assert.equal(res.headers.get('content-type'), 'text/event-stream');
        await readStream(res, (m) => m.method === 'notifications/progress');
        abort.abort();
        await eventually('the upstream saw the cancellation', async () => (await cancelledSoFar()) > before);
      });
    }

    it('each request goes to the least-loaded replica on its own', async () => {
      const abort = new AbortController();
      const slow = await openStateless(at('pair'), 'tools/call', { name: 'slow_count', arguments: { count: 25 }, _meta: { progressToken: 'p' } }, abort.signal);
      const done = readStream(slow, (m) => m.id === 1);
      // While the slow call holds one replica, every other request lands on the other one.
      const quick = new Set<string>();
      for (let i = 0; i < 4; i++) quick.add((JSON.parse(await callText(at('pair'), 'stats')) as { replica: string }).replica);
      const slowReplica = /on (\w+)$/.exec(textOf((await done).at(-1)?.result))?.[1];
      assert.equal(quick.size, 1, `quick calls went to ${[...quick].join(', ')}`);
      assert.ok(slowReplica && !quick.has(slowReplica), `the slow call ran on ${slowReplica}, the quick ones on ${[...quick].join(', ')}`);
    });
  });

  describe('subscriptions/listen', () => {
    for (const server of ['sessions', 'modern'] as const) {
      it(`acknowledges first, then delivers the list changes asked for, tagged (${server === 'sessions' ? 'translated to the GET stream' : 'forwarded'})`, async () => {
        const abort = new AbortController();
        const res = await openStateless(at(server), 'subscriptions/listen', { notifications: { toolsListChanged: true } }, abort.signal, 'sub-1');
        let triggered = false;
        const seen = await readStream(res, async (m) => {
          if (!triggered) {
            triggered = true;
            await callText(at(server), 'test_trigger_tool_change');
          }
          return m.method === 'notifications/tools/list_changed';
        });
        abort.abort();
        assert.equal(seen[0]?.method, 'notifications/subscriptions/acknowledged');
        assert.deepEqual((seen[0]?.params as Record<string, unknown>).notifications, { toolsListChanged: true });
        const change = seen.at(-1)!;
        assert.equal(change.method, 'notifications/tools/list_changed');
        assert.equal(((change.params as Record<string, unknown>)._meta as Record<string, unknown>)['io.modelcontextprotocol/subscriptionId'], 'sub-1');
      });
    }
  });

  it('a pooled upstream session the upstream forgot is opened again transparently', async () => {
    const own = await startDemoUpstream('restart');
    const g = await startGateway({ servers: { d: { upstreams: [{ url: own.url }] } } });
    let again: HttpUpstreamProcess | undefined;
    try {
      assert.equal(await callText(`${g.url}/mcp/d`, 'echo', { text: 'one' }), 'one');
      await own.child.kill('SIGKILL');
      again = await startDemoUpstream('restart', own.port);
      assert.equal(await callText(`${g.url}/mcp/d`, 'echo', { text: 'two' }), 'two');
    } finally {
      await g.close();
      await again?.stop();
    }
  });
});

describe('revision 2026-07-28 with auth on', () => {
  const AUD = 'urn:mcpgw:stateless';
  let issuer: TestIssuer;
  let demo: HttpUpstreamProcess;
  let modern: EraServer;
  let gw: Gateway;
  const at = (server: string) => `${gw.url}/mcp/${server}`;

  before(async () => {
    [issuer, demo, modern] = await Promise.all([startTestIssuer(), startDemoUpstream('auth'), startEraServer('stateless')]);
    const hide = { auth: { tools: { test_error_handling: { scopes: ['admin'] }, add: { scopes: ['admin'] } } } };
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD },
      servers: { modern: { upstreams: [{ url: modern.url }], ...hide }, demo: { upstreams: [{ url: demo.url }], ...hide } },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), demo?.stop(), modern?.stop()]);
  });

  for (const [server, hidden] of [['modern', 'test_error_handling'], ['demo', 'add']] as const) {
    it(`authenticates every request and hides what the caller may not use (${server})`, async () => {
      const anonymous = await statelessPost(at(server), 'tools/list', {});
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer/);
      const auth = { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: AUD })}` };
      const list = rpc(await statelessPost(at(server), 'tools/list', {}, { headers: auth }));
      const names = (list.result?.tools as { name: string }[]).map((t) => t.name);
      assert.ok(names.length > 1 && !names.includes(hidden), names.join());
      const call = await statelessPost(at(server), 'tools/call', { name: hidden, arguments: { a: 1, b: 2 } }, { headers: auth });
      const body = rpc(call);
      assert.notEqual(body.error?.code, -32020, `the hidden name is swapped in the header too: ${call.text}`);
      assert.ok(body.error || body.result?.isError, `a hidden tool answers like an unknown one: ${call.text}`);
      assert.ok(!call.text.includes('"text":"3"'), 'it did not run');
    });
  }
});

describe('revision 2026-07-28 and translated sessions with Redis and two gateway replicas', () => {
  let redis: RedisServer;
  let modern: EraServer;
  let one: Gateway;
  let two: Gateway;

  before(async () => {
    [redis, modern] = await Promise.all([startRedis(), startEraServer('stateless')]);
    const doc = { redis: { url: redis.url }, servers: { modern: { upstreams: [{ url: modern.url }] } } };
    [one, two] = await Promise.all([startGateway(doc), startGateway(doc)]);
  });
  after(async () => {
    await Promise.all([one?.close(), two?.close()]);
    await Promise.all([redis?.stop(), modern?.stop()]);
  });

  it('a session the gateway holds for a 2026-07-28 upstream is served by any replica, and ended on all', async () => {
    const sid = await openSession(`${one.url}/mcp/modern`, '2025-06-18');
    const h = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
    const call = rpc(await post(`${two.url}/mcp/modern`, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'test_simple_text', arguments: {} } }, h));
    assert.equal(textOf(call.result), 'This is a simple text response for testing.');
    assert.equal((await request(`${two.url}/mcp/modern`, 'DELETE', h)).status, 200);
    await eventually('the other replica knows the session ended', async () => (await post(`${one.url}/mcp/modern`, { jsonrpc: '2.0', id: 3, method: 'ping' }, h)).status === 404);
  });

  it('a 2026-07-28 SSE answer goes through the Redis event log, without priming', async () => {
    const res = await statelessPost(`${one.url}/mcp/modern`, 'tools/call', { name: 'test_tool_with_progress', arguments: {}, _meta: meta({}, { progressToken: 7 }) }, { id: 'p1' });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const messages = sseMessages(res.text);
    assert.deepEqual(messages.filter((m) => m.method === 'notifications/progress').map((m) => (m.params as { progress: number }).progress), [0, 50, 100]);
    assert.equal(messages.at(-1)?.id, 'p1');
    assert.ok(!/^retry:/m.test(res.text), 'no priming event: the revision has no resumption');
  });
});
