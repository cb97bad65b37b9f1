import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { connectV2, startEraServer, type EraServer } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { connectLegacyClient, initializeLegacy, LegacyStream, postMessage } from '../helpers/legacy.ts';
import { startListUpstream, type ListUpstream } from '../helpers/list-upstream.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { until } from '../helpers/streams.ts';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { postSse, readSse } from '../helpers/sse.ts';
import { startRecordingUpstream } from '../helpers/recording-upstream.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/**
 * Curation (servers.<name>.curation): on every front door the published view is the only view.
 * The demo upstream (src/demo/server.ts) has echo(text), add(a, b), stats, ask_name, …, the
 * resource demo://readme and the prompt greet.
 */

const CURATION = {
  tools: {
    exclude: ['stats', 'ask_*'],
    edit: {
      echo: { name: 'say', description: 'Says it back', defaults: { text: 'nothing' } },
      add: { name: 'plus', title: 'Plus a hundred', annotations: { readOnlyHint: false, destructiveHint: true }, fixed: { b: 100 } },
    },
  },
  prompts: { exclude: ['greet'] },
  resources: { exclude: ['demo://readme'] },
};

/** What the two kinds of SDK client have in common here. */
interface AnyClient {
  listTools(): Promise<{ tools: { name: string; title?: string; description?: string; annotations?: unknown; inputSchema: unknown }[] }>;
  callTool(params: { name: string; arguments: Record<string, unknown> }): Promise<unknown>;
  listPrompts(): Promise<{ prompts: { name: string }[] }>;
  getPrompt(params: { name: string; arguments?: Record<string, string> }): Promise<unknown>;
  listResources(): Promise<{ resources: { uri: string }[] }>;
  readResource(params: { uri: string }): Promise<unknown>;
}

/** An answer or an error, as text, with `name` made `X`: a hidden item must be refused exactly as one that does not exist. */
async function outcome(run: () => Promise<unknown>, name: string): Promise<string> {
  let text: string;
  try {
    text = JSON.stringify(await run());
  } catch (err) {
    text = `error: ${(err as Error).message}`;
  }
  return text.replaceAll(name, "X");
}

/** The demo server as CURATION publishes it, seen through one client; `n` gives a tool's or prompt's name at this door. */
async function assertPublishedView(client: AnyClient, n: (name: string) => string = (x) => x, uri: (u: string) => string = (x) => x): Promise<void> {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  for (const hidden of ['stats', 'ask_name', 'echo', 'add']) assert.ok(!names.includes(n(hidden)), `${hidden} is not listed`);
  assert.ok(names.includes(n('whoami')), 'a tool nobody curated is listed as it is');

  const say = tools.find((t) => t.name === n('say'));
  assert.ok(say, 'echo is listed as say');
  assert.equal(say.description, 'Says it back');
  const saySchema = say.inputSchema as { properties: Record<string, { default?: unknown }>; required?: string[] };
  assert.equal(saySchema.properties.text?.default, 'nothing');
  assert.ok(!(saySchema.required ?? []).includes('text'), 'a default is not required');

  const plus = tools.find((t) => t.name === n('plus'));
  assert.ok(plus, 'add is listed as plus');
  assert.equal(plus.title, 'Plus a hundred');
  assert.equal(plus.description, 'Adds two numbers', 'what is not overridden stays');
  assert.deepEqual(plus.annotations, { readOnlyHint: false, destructiveHint: true });
  const plusSchema = plus.inputSchema as { properties: Record<string, unknown>; required?: string[] };
  assert.deepEqual(Object.keys(plusSchema.properties), ['a'], 'the fixed argument is not in the schema');
  assert.deepEqual(plusSchema.required, ['a']);

  // Callable by the published name (the upstream runs its own tool), not by the upstream's.
  assert.equal(textOf(await client.callTool({ name: n('say'), arguments: { text: 'hi' } })), 'hi');
  assert.equal(textOf(await client.callTool({ name: n('say'), arguments: {} })), 'nothing', 'the default when the caller sends none');
  assert.equal(textOf(await client.callTool({ name: n('plus'), arguments: { a: 1 } })), '101', 'the fixed argument is set');
  assert.equal(textOf(await client.callTool({ name: n('plus'), arguments: { a: 1, b: 5 } })), '101', "a caller's value of a fixed argument is overridden");

  const unknownTool = await outcome(() => client.callTool({ name: n('no_such_tool'), arguments: {} }), 'no_such_tool');
  assert.match(unknownTool, /X/);
  for (const hidden of ['stats', 'echo', 'add']) {
    assert.equal(await outcome(() => client.callTool({ name: n(hidden), arguments: { text: 'x', a: 1, b: 2 } }), hidden), unknownTool, `${hidden} is unknown`);
  }

  assert.ok(!(await client.listPrompts()).prompts.some((p) => p.name === n('greet')));
  const unknownPrompt = await outcome(() => client.getPrompt({ name: n('no_such_prompt'), arguments: { name: 'Bo' } }), 'no_such_prompt');
  assert.equal(await outcome(() => client.getPrompt({ name: n('greet'), arguments: { name: 'Bo' } }), 'greet'), unknownPrompt);

  assert.ok(!(await client.listResources()).resources.some((r) => r.uri === uri('demo://readme')));
  const unknownResource = await outcome(() => client.readResource({ uri: uri('demo://nothing') }), 'nothing');
  assert.equal(await outcome(() => client.readResource({ uri: uri('demo://readme') }), 'readme'), unknownResource);
  assert.equal(await outcome(() => client.readResource({ uri: uri('DEMO://readme') }), 'readme'), unknownResource.replace('demo', 'DEMO'), 'as a URL parser reads it too');
}

describe('curation: the published view is the only view', () => {
  let demo: HttpUpstreamProcess;
  let modern: EraServer;
  let gw: Gateway;

  before(async () => {
    [demo, modern] = await Promise.all([startDemoUpstream('a'), startEraServer('stateless')]);
    gw = await startGateway({
      servers: {
        demo: { upstreams: [{ url: demo.url }], curation: CURATION },
        // A 2026-07-28-only upstream: requests go to it one by one (Upstream.exchange).
        modern: {
          upstreams: [{ url: modern.url }],
          era: 'stateless',
          curation: { tools: { include: ['test_*'], exclude: ['test_*_content', 'test_sampling'], edit: { test_simple_text: { name: 'simple', description: 'Plain text' } } } },
        },
        all: { compose: ['demo'] },
        // A virtual server's own curation speaks of its (prefixed) names.
        picked: { compose: ['demo'], curation: { tools: { include: ['demo__say', 'demo__plus'], edit: { demo__plus: { name: 'sum' } } } } },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([demo?.stop(), modern?.stop()]);
  });

  const doors: [string, () => Promise<{ client: AnyClient; close(): Promise<void> }>][] = [
    ['session era (SDK 1.x, Streamable HTTP)', () => connectClient(`${gw.url}/mcp/demo`)],
    ['2024-11-05 (SDK 1.x, SSEClientTransport)', () => connectLegacyClient(`${gw.url}/mcp/demo/sse`)],
    ['2026-07-28 (SDK 2.x, translated to a session)', () => connectV2(`${gw.url}/mcp/demo`) as Promise<{ client: AnyClient; close(): Promise<void> }>],
  ];
  for (const [door, connect] of doors) {
    it(door, async () => {
      const { client, close } = await connect();
      try {
        await assertPublishedView(client);
      } finally {
        await close();
      }
    });
  }

  it('compose: a member is published as its own curation says, then prefixed', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/all`);
    try {
      await assertPublishedView(client, (x) => `demo__${x}`, (u) => `demo+${u}`);
    } finally {
      await close();
    }
  });

  it('compose: a virtual server curates its own names over its members\' curation', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/picked`);
    try {
      assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), ['demo__say', 'sum']);
      assert.equal(textOf(await client.callTool({ name: 'sum', arguments: { a: 2 } })), '102');
      const unknown = await outcome(() => client.callTool({ name: 'no_such_tool', arguments: {} }), 'no_such_tool');
      assert.equal(await outcome(() => client.callTool({ name: 'demo__plus', arguments: { a: 2 } }), 'demo__plus'), unknown);
      assert.equal(await outcome(() => client.callTool({ name: 'demo__whoami', arguments: {} }), 'demo__whoami'), unknown);
    } finally {
      await close();
    }
  });

  for (const [door, connect] of [
    ['2026-07-28 upstream, 2026-07-28 client', (url: string) => connectV2(url) as Promise<{ client: AnyClient; close(): Promise<void> }>],
    ['2026-07-28 upstream, session-era client', (url: string) => connectClient(url)],
  ] as const) {
    it(door, async () => {
      const { client, close } = await connect(`${gw.url}/mcp/modern`);
      try {
        const names = (await client.listTools()).tools.map((t) => t.name);
        assert.ok(!names.includes('stats') && !names.includes('slow_count'), 'only what include names');
        assert.ok(!names.includes('test_image_content') && !names.includes('test_sampling'), 'not what exclude names');
        assert.ok(!names.includes('test_simple_text') && names.includes('simple'));
        assert.ok(names.includes('test_error_handling'));
        assert.equal((await client.listTools()).tools.find((t) => t.name === 'simple')?.description, 'Plain text');
        assert.equal(textOf(await client.callTool({ name: 'simple', arguments: {} })), 'This is a simple text response for testing.');
        const unknown = await outcome(() => client.callTool({ name: 'no_such_tool', arguments: {} }), 'no_such_tool');
        for (const hidden of ['stats', 'test_simple_text', 'test_image_content']) assert.equal(await outcome(() => client.callTool({ name: hidden, arguments: {} }), hidden), unknown);
      } finally {
        await close();
      }
    });
  }
});

describe('curation with auth: both apply, the policy speaks of published names', () => {
  let demo: HttpUpstreamProcess;
  let issuer: TestIssuer;
  let gw: Gateway;
  const AUD = 'https://gateway.test/mcp';

  before(async () => {
    [demo, issuer] = await Promise.all([startDemoUpstream('a'), startTestIssuer()]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD },
      servers: { demo: { upstreams: [{ url: demo.url }], curation: CURATION, auth: { tools: { say: { scopes: ['admin'] } } } } },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([demo?.stop(), issuer?.close()]);
  });

  const as = async (scope: string) => connectClient(`${gw.url}/mcp/demo`, { headers: { authorization: `Bearer ${await issuer.sign({ sub: scope, aud: AUD, scope })}` } });

  it('a caller without the scope sees neither what curation hides nor what the policy hides', async () => {
    const { client, close } = await as('mcp');
    try {
      const names = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('plus') && names.includes('whoami'));
      for (const hidden of ['say', 'echo', 'stats', 'add']) assert.ok(!names.includes(hidden), hidden);
      const unknown = await outcome(() => client.callTool({ name: 'no_such_tool', arguments: {} }), 'no_such_tool');
      for (const hidden of ['say', 'echo', 'stats']) assert.equal(await outcome(() => client.callTool({ name: hidden, arguments: { text: 'x' } }), hidden), unknown, hidden);
      assert.equal(textOf(await client.callTool({ name: 'plus', arguments: { a: 1 } })), '101');
    } finally {
      await close();
    }
  });

  it('a caller with the scope sees the whole published view', async () => {
    const { client, close } = await as('mcp admin');
    try {
      await assertPublishedView(client);
    } finally {
      await close();
    }
  });
});

describe('curation steers the cache and retries: the tool hints are learnt from the curated list', () => {
  let up: ScriptedUpstream;
  let gw: Gateway;
  let sid: string;

  before(async () => {
    up = await startScriptedUpstream();
    gw = await startGateway({
      servers: {
        api: {
          upstreams: [{ url: up.url }],
          cache: { ttl: '1m' },
          // Upstream: lookup is readOnlyHint, charge has no hint.
          curation: { tools: { edit: { charge: { name: 'pay', annotations: { readOnlyHint: true } }, lookup: { annotations: { readOnlyHint: false } } } } },
        },
      },
    });
    sid = await openSession(`${gw.url}/mcp/api`);
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  const rpc = async (method: string, params: Record<string, unknown> = {}) => {
    const res = await post(`${gw.url}/mcp/api`, { jsonrpc: '2.0', id: 7, method, params }, sessionHeaders(sid));
    assert.equal(res.status, 200, res.text);
    return rpcOf(res);
  };
  const read = async () => ((await rpc('resources/read', { uri: 'res://doc' })).result as { contents: { text: string }[] }).contents[0]!.text;

  it('the cache keeps the curated list, for everyone', async () => {
    const lists = [await rpc('tools/list'), await rpc('tools/list')].map((m) => (m.result as { tools: { name: string; annotations?: unknown }[] }).tools);
    assert.equal(up.done('tools/list'), 1, 'the second list came from the cache');
    for (const tools of lists) {
      assert.deepEqual(tools.map((t) => t.name).sort(), ['lookup', 'pay', 'put', 'slow']);
      assert.deepEqual(tools.find((t) => t.name === 'pay')?.annotations, { readOnlyHint: true });
    }
  });

  it('a tool curation marks readOnlyHint keeps the cache; one it unmarks empties it', async () => {
    await read();
    const before = up.done('resources/read res://doc');
    await rpc('tools/call', { name: 'pay', arguments: {} });
    await read();
    assert.equal(up.done('resources/read res://doc'), before, 'pay (readOnlyHint by curation) kept the cache');
    assert.equal(up.done('tools/call charge'), 1, 'the upstream ran its own tool');
    await rpc('tools/call', { name: 'lookup', arguments: {} });
    await read();
    assert.equal(up.done('resources/read res://doc'), before + 1, 'lookup (readOnlyHint false by curation) emptied it');
  });

  it('a tool curation marks readOnlyHint is retried after a transient failure', async () => {
    const before = up.attempts('tools/call charge');
    up.fail('tools/call charge', 1, 'status');
    const answer = await rpc('tools/call', { name: 'pay', arguments: {} });
    assert.ok(answer.result, JSON.stringify(answer));
    assert.equal(up.attempts('tools/call charge') - before, 2, 'one 503, then the retry');
  });
});

describe('curation: a list answer read from the upstream again is curated like any other', () => {
  let up: ListUpstream;
  let gw: Gateway;
  const names = (result: unknown) => (result as { tools: { name: string }[] }).tools.map((t) => t.name);

  before(async () => {
    // Its tools/list answer comes only on the GET that resumes its broken POST stream.
    up = await startListUpstream('drop');
    gw = await startGateway({ servers: { api: { upstreams: [{ url: up.url }], curation: { tools: { exclude: ['admin_*'], edit: { echo: { name: 'say' } } } } } } });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  it('session era', async () => {
    const url = `${gw.url}/mcp/api`;
    const sid = await openSession(url);
    const resumedBefore = up.resumed;
    const { res } = await postSse(url, { jsonrpc: '2.0', id: 7, method: 'tools/list' }, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });
    const events = await readSse(res, (e) => e.message?.id === 7);
    assert.equal(up.resumed - resumedBefore, 1, 'the answer came on the upstream resumption');
    assert.deepEqual(names(events.find((e) => e.message?.id === 7)!.message!.result), ['say']);
  });

  it('2024-11-05', async () => {
    const stream = await LegacyStream.open(`${gw.url}/mcp/api/sse`);
    try {
      await stream.until((e) => e.some((x) => x.event === 'endpoint'));
      const endpoint = stream.endpoint(`${gw.url}/mcp/api/sse`);
      await initializeLegacy(stream, endpoint);
      const resumedBefore = up.resumed;
      assert.equal((await postMessage(endpoint, { jsonrpc: '2.0', id: 7, method: 'tools/list' })).status, 202);
      const events = await stream.until((e) => e.some((x) => x.message?.id === 7));
      assert.equal(up.resumed - resumedBefore, 1, 'the answer came on the upstream resumption');
      assert.deepEqual(names(events.find((x) => x.message?.id === 7)!.message!.result), ['say']);
    } finally {
      stream.drop();
    }
  });
});

describe("curation: the upstream's list_changed still flows, and the next list is curated again", () => {
  let demo: HttpUpstreamProcess;
  let gw: Gateway;

  before(async () => {
    // DEMO_GROW: a tool `grow` that adds a tool, and the upstream says its list changed.
    demo = await startDemoUpstream('a', 0, { env: { DEMO_GROW: '1' } });
    gw = await startGateway({ servers: { demo: { upstreams: [{ url: demo.url }], cache: { ttl: '1m' }, curation: { tools: { exclude: ['secret_*'], edit: { grow: { name: 'add_tool' } } } } } } });
  });
  after(async () => {
    await gw?.close();
    await demo?.stop();
  });

  it('a cached curated list is dropped on list_changed; the new tool shows, an excluded one does not', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/demo`);
    try {
      let changed = 0;
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
      const before = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(before.includes('add_tool') && !before.includes('grow'));
      await client.callTool({ name: 'add_tool', arguments: { name: 'secret_keys' } });
      await client.callTool({ name: 'add_tool', arguments: { name: 'fresh' } });
      await until(() => changed >= 2, 'both list_changed notifications reached the client');
      const after = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(after.includes('fresh'), 'the new tool is listed');
      assert.ok(!after.includes('secret_keys'), 'a new tool curation excludes is not');
    } finally {
      await close();
    }
  });
});

describe('curation of resources: percent escapes', () => {
  it('an excluded URI spelled with percent escapes (as a server that serves paths decodes it) never reaches the upstream', async () => {
    const up = await startRecordingUpstream({ json: true });
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: up.url }], curation: { resources: { exclude: ['demo://secret*'] } } } } });
    try {
      const sid = await openSession(`${gw.url}/mcp/rec`);
      for (const uri of ['demo://%73ecret', 'demo://%73%65cret', 'demo://secre%74/x']) {
        const res = await post(`${gw.url}/mcp/rec`, { jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri } }, sessionHeaders(sid));
        assert.equal(res.status, 200, res.text);
        assert.ok(!up.requests.some((r) => r.body.includes(uri)), `${uri} went upstream as it came`);
      }
    } finally {
      await gw.close();
      await up.close();
    }
  });
});
