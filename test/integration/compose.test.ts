import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { startGateway } from '../helpers/gateway.ts';
import { connectLegacyClient } from '../helpers/legacy.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { startPolicyUpstream, type PolicyUpstream } from '../helpers/policy-upstream.ts';
import { INIT, openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { metricValue, until } from '../helpers/streams.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const FINANCE = 'finance-and-accounting-department-tools';
const ENGINEERING = 'platform-engineering-department-tools';
const LONG = 'summarize_the_quarterly_financial_report_for_the_board_meeting';
/** Arguments the demo's tools need, by original name. */
const ARGS: Record<string, Record<string, unknown>> = { echo: { text: 'x' }, add: { a: 2, b: 3 }, slow_count: { count: 2, delayMs: 1 }, announce: { text: 'hi' }, grow: { name: 'fresh' } };

describe('a virtual server over two upstreams with long names', () => {
  let finance: HttpUpstreamProcess;
  let engineering: HttpUpstreamProcess;
  let gw: Gateway;
  let url: string;
  before(async () => {
    [finance, engineering] = await Promise.all([
      startDemoUpstream('finance', 0, { env: { DEMO_EXTRA_TOOLS: `${LONG},${LONG}_v2,short` } }),
      startDemoUpstream('engineering', 0, { env: { DEMO_EXTRA_TOOLS: `${LONG},deploy`, DEMO_GROW: '1' } }),
    ]);
    gw = await startGateway({
      servers: {
        [FINANCE]: { upstreams: [{ url: finance.url }] },
        [ENGINEERING]: { upstreams: [{ url: engineering.url }] },
        all: { compose: [FINANCE, ENGINEERING] },
      },
    });
    url = `${gw.url}/mcp/all`;
  });
  after(async () => {
    await gw?.close();
    await Promise.all([finance?.stop(), engineering?.stop()]);
  });

  it('lists the union, every name within 64 characters and unique, and every tool is callable on its owner', async () => {
    const { client, close } = await connectClient(url);
    try {
      assert.equal(client.getServerVersion()?.name, 'all');
      const tools = (await client.listTools()).tools;
      const names = tools.map((t) => t.name);
      assert.equal(names.length, 7 + 3 + 7 + 3, names.join('\n'));
      assert.equal(new Set(names).size, names.length, 'unique');
      for (const name of names) assert.ok(name.length <= 64, `${name} has ${name.length} characters`);
      const shortened = names.filter((n) => n.includes(LONG.slice(0, 10)));
      assert.equal(shortened.length, 3);
      for (const n of shortened) assert.match(n, /-[0-9a-f]{8}$/, 'shortened with a hash');
      for (const t of tools) {
        const member = t.name.startsWith(`${FINANCE}__`) ? 'finance' : 'engineering';
        assert.ok(t.name.startsWith(`${member === 'finance' ? FINANCE : ENGINEERING}`.slice(0, 30)), t.name);
        const original = Object.keys(ARGS).find((k) => t.name.endsWith(`__${k}`));
        const result = await client.callTool({ name: t.name, arguments: original ? ARGS[original] : {} });
        assert.ok(!result.isError, `${t.name}: ${JSON.stringify(result)}`);
        if (t.name.endsWith('__whoami')) assert.equal(textOf(result), member);
        if (t.name.endsWith('__ask_name')) assert.equal(textOf(result), 'Hello, Ada!', 'elicitation from a member reaches the client and back');
        if (!original && !/__(stats|ask_name|whoami)$/.test(t.name)) assert.match(textOf(result), new RegExp(`^${member}:`), `${t.name} ran on ${member}`);
      }
      const both = await Promise.all([FINANCE, ENGINEERING].map(async (m) => textOf(await client.callTool({ name: tools.find((t) => t.name.startsWith(m.slice(0, 20)) && t.name.includes('summarize'))!.name, arguments: {} }))));
      assert.deepEqual(both, [`finance:${LONG}`, `engineering:${LONG}`], 'the same long name on two members stays two tools');
      const unknown = await client.callTool({ name: 'nobody__nothing', arguments: {} }).catch((err: Error) => err);
      assert.match(String(unknown instanceof Error ? unknown.message : JSON.stringify(unknown)), /not found/i);
    } finally {
      await close();
    }
  });

  it('prefixes resources and prompts and routes them to their owner', async () => {
    const { client, close } = await connectClient(url);
    try {
      const uris = (await client.listResources()).resources.map((r) => r.uri).sort();
      assert.deepEqual(uris, [`${FINANCE}+demo://readme`, `${ENGINEERING}+demo://readme`].sort());
      const read = await client.readResource({ uri: `${ENGINEERING}+demo://readme` });
      assert.equal(read.contents[0]!.uri, `${ENGINEERING}+demo://readme`);
      assert.match(String((read.contents[0] as { text?: string }).text), /demo/);
      const prompts = (await client.listPrompts()).prompts.map((p) => p.name).sort();
      assert.deepEqual(prompts, [`${FINANCE}__greet`, `${ENGINEERING}__greet`].sort());
      const prompt = await client.getPrompt({ name: `${FINANCE}__greet`, arguments: { name: 'Bo' } });
      assert.match(JSON.stringify(prompt.messages), /greet Bo/);
    } finally {
      await close();
    }
  });

  it("forwards a member's list_changed, and the new tool is listed and callable", async () => {
    const memberStreams = () => metricValue(gw, 'mcp_upstream_streams', { server: ENGINEERING });
    // Earlier clients' GET streams are still read for events.detachedGrace (30 s) after they left.
    const before = await memberStreams();
    const { client, close } = await connectClient(url);
    try {
      let changed = 0;
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
      // The member sends list_changed on its GET stream and drops it while none is open: wait for
      // the client's GET (opened in the background after initialize) to reach the member.
      await until(async () => (await memberStreams()) > before, "the member's GET stream");
      await client.callTool({ name: `${ENGINEERING}__grow`, arguments: { name: 'fresh' } });
      for (let i = 0; i < 50 && changed === 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(changed > 0, 'notifications/tools/list_changed reached the client');
      const fresh = (await client.listTools()).tools.find((t) => t.name === `${ENGINEERING}__fresh`);
      assert.ok(fresh);
      assert.equal(textOf(await client.callTool({ name: fresh.name, arguments: {} })), 'engineering:fresh');
    } finally {
      await close();
    }
  });

  it('refuses a batch, even of one message, with MCPGW_ERR_BATCH_NOT_SUPPORTED', async () => {
    const sid = await openSession(url, '2025-03-26');
    const headers = { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-03-26' };
    for (const batch of [[{ jsonrpc: '2.0', method: 'notifications/roots/list_changed' }], [{ jsonrpc: '2.0', id: 5, result: {} }]]) {
      const res = await post(url, batch, headers);
      assert.equal(res.status, 400, res.text);
      assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_BATCH_NOT_SUPPORTED');
    }
  });

  it('serves an old 2024-11-05 SSE client too', async () => {
    const { client, close } = await connectLegacyClient(`${url}/sse`);
    try {
      const long = (await client.listTools()).tools.find((t) => t.name.startsWith(FINANCE) && t.name.includes('summarize'))!;
      assert.ok(long.name.length <= 64);
      assert.equal(textOf(await client.callTool({ name: long.name, arguments: {} })), `finance:${LONG}`);
    } finally {
      await close();
    }
  });
});

describe("a virtual server over a member whose server-level rule turns the caller away (auth jwt)", () => {
  const AUD = 'urn:mcpgw:compose';
  let issuer: TestIssuer;
  let open: PolicyUpstream;
  let locked: PolicyUpstream;
  let gw: Gateway;

  before(async () => {
    [issuer, open, locked] = await Promise.all([startTestIssuer(), startPolicyUpstream('session'), startPolicyUpstream('session')]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD },
      servers: {
        open: { upstreams: [{ url: open.url }] },
        locked: { upstreams: [{ url: locked.url }], auth: { scopes: ['locked'] } },
        both: { compose: ['open', 'locked'] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), open?.close(), locked?.close()]);
  });

  it('shows the caller none of that member: not in the lists, and a call of it refused (MCPGW_ERR_FORBIDDEN, as its own door), never run', async () => {
    const headers = { authorization: `Bearer ${await issuer.sign({ sub: 'outsider', aud: AUD, scope: 'mcp' })}` };
    assert.equal((await post(`${gw.url}/mcp/locked`, INIT, headers)).status, 403, 'its own endpoint refuses the caller');
    const url = `${gw.url}/mcp/both`;
    const sid = await openSession(url, '2025-11-25', headers);
    const h = { ...headers, ...sessionHeaders(sid) };
    const list = await post(url, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, h);
    const names = (rpcOf(list).result as { tools: { name: string }[] }).tools.map((t) => t.name);
    assert.ok(names.includes('open__lookup'), names.join(', '));
    assert.ok(!names.some((n) => n.startsWith('locked__')), names.join(', '));
    const call = (name: string) => post(url, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name, arguments: {} } }, h);
    const hidden = rpcOf(await call('locked__lookup'));
    const unknown = rpcOf(await call('locked__nope'));
    // A name of the member's, real or not, is refused alike: nothing tells the caller what the member has.
    assert.equal(hidden.error?.code, unknown.error?.code, JSON.stringify(hidden));
    assert.equal((hidden.error?.data as { code?: string } | undefined)?.code, 'MCPGW_ERR_FORBIDDEN', JSON.stringify(hidden));
    const read = rpcOf(await post(url, { jsonrpc: '2.0', id: 4, method: 'resources/read', params: { uri: 'locked+res://doc' } }, h));
    assert.ok(read.error, JSON.stringify(read));
    assert.equal(locked.done('tools/call lookup'), 0, 'the member never ran it');
    assert.equal(locked.done('resources/read res://doc'), 0, 'the member never read it');
    assert.equal((rpcOf(await call('open__lookup')).result as { isError?: boolean }).isError, undefined, 'the other member serves the caller');
  });

  it('serves a caller that holds the scope as its own endpoint does', async () => {
    const headers = { authorization: `Bearer ${await issuer.sign({ sub: 'insider', aud: AUD, scope: 'mcp locked' })}` };
    const url = `${gw.url}/mcp/both`;
    const sid = await openSession(url, '2025-11-25', headers);
    const res = rpcOf(await post(url, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'locked__lookup', arguments: {} } }, { ...headers, ...sessionHeaders(sid) }));
    assert.equal(res.error, undefined, JSON.stringify(res));
    assert.equal(locked.done('tools/call lookup'), 1);
  });
});
