import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { statelessPost } from '../helpers/era.ts';
import { initializeLegacy, LegacyStream } from '../helpers/legacy.ts';
import { INIT, openSession, post, rpcOf } from '../helpers/raw.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { openGetStream, until } from '../helpers/streams.ts';

/**
 * compose: a member's auth rule for the server as a whole (`servers.<member>.auth.scopes` /
 * `claims`) holds through a virtual server as it does at the member's own door.
 */
const PUBLIC = 'https://gateway.test';

describe('compose: a member server a caller may not use is not reachable through a virtual server', () => {
  let issuer: TestIssuer;
  let open: RecordingUpstream;
  let locked: RecordingUpstream;
  let gw: Gateway;

  before(async () => {
    [issuer, open, locked] = await Promise.all([startTestIssuer(), startRecordingUpstream({ json: true }), startRecordingUpstream({ json: true })]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], publicUrl: PUBLIC },
      servers: {
        open: { upstreams: [{ url: open.url }] },
        locked: { upstreams: [{ url: locked.url }], auth: { scopes: ['admin'] } },
        claimed: { upstreams: [{ url: locked.url }], auth: { claims: { team: 'ops' } } },
        all: { compose: ['open', 'locked', 'claimed'] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), open?.close(), locked?.close()]);
  });

  const token = (scope: string, extra: Record<string, unknown> = {}) => issuer.sign({ sub: 'someone', aud: `${PUBLIC}/mcp/all`, scope, ...extra });
  async function session(t: string) {
    const auth = { authorization: `Bearer ${t}` };
    const sid = await openSession(`${gw.url}/mcp/all`, '2025-11-25', auth);
    return { ...auth, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  }
  const rpc = async (h: Record<string, string>, id: number, method: string, params: Record<string, unknown> = {}) => {
    const res = await post(`${gw.url}/mcp/all`, { jsonrpc: '2.0', id, method, params }, h);
    assert.equal(res.status, 200, res.text);
    return rpcOf(res);
  };

  it('its own door refuses the caller (the rule under test)', async () => {
    const res = await post(`${gw.url}/mcp/locked`, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } }, { authorization: `Bearer ${await issuer.sign({ sub: 'someone', aud: `${PUBLIC}/mcp/locked`, scope: 'mcp' })}` });
    assert.equal(res.status, 403);
  });

  it('a caller without the scope (or the claim) sees none of the member, calls none of it, and nothing of theirs reaches it', async () => {
    const h = await session(await token('mcp'));
    const from = locked.requests.length;
    const { tools } = (await rpc(h, 2, 'tools/list')).result as { tools: { name: string }[] };
    const names = tools.map((t) => t.name);
    assert.ok(names.includes('open__echo'));
    assert.ok(!names.some((n) => n.startsWith('locked__') || n.startsWith('claimed__')), names.join());
    // The member is named by the virtual server's own prefixes: a call to it is refused, as its own door refuses it.
    for (const [id, method, params] of [
      [3, 'tools/call', { name: 'locked__echo', arguments: { text: 'x' } }],
      [4, 'tools/call', { name: 'claimed__echo', arguments: { text: 'x' } }],
      [5, 'resources/read', { uri: 'locked+demo://public' }],
      [6, 'prompts/get', { name: 'locked__greet', arguments: { name: 'x' } }],
    ] as const) {
      const refused = await rpc(h, id, method, params);
      assert.equal(refused.error?.code, -31015, `${method} ${JSON.stringify(params)}`);
      assert.equal(refused.error?.data?.code, 'MCPGW_ERR_FORBIDDEN');
    }
    assert.deepEqual((await rpc(h, 7, 'logging/setLevel', { level: 'info' })).result, {}, 'a fan-out goes on with the members the caller may use');
    assert.equal(locked.requests.slice(from).length, 0, 'nothing reached the member');
    assert.ok(!locked.ran.includes('echo'));
  });

  it('a caller with the scope and the claim uses every member', async () => {
    const h = await session(await token('mcp admin', { team: 'ops' }));
    const { tools } = (await rpc(h, 2, 'tools/list')).result as { tools: { name: string }[] };
    const names = tools.map((t) => t.name);
    for (const n of ['open__echo', 'locked__echo', 'claimed__echo']) assert.ok(names.includes(n), n);
    const called = await rpc(h, 3, 'tools/call', { name: 'locked__echo', arguments: { text: 'admin was here' } });
    assert.deepEqual((called.result as { content: unknown }).content, [{ type: 'text', text: 'admin was here' }]);
  });

  it('a 2026-07-28 client (its requests on sessions the gateway pools for it) is checked against each member as well', async () => {
    const list = async (t: string) => {
      const res = await statelessPost(`${gw.url}/mcp/all`, 'tools/list', {}, { headers: { authorization: `Bearer ${t}` } });
      assert.equal(res.status, 200, res.text);
      return ((rpcOf(res).result as { tools: { name: string }[] }).tools).map((x) => x.name);
    };
    const admin = await token('mcp admin', { team: 'ops' });
    for (const n of ['open__echo', 'locked__echo', 'claimed__echo']) assert.ok((await list(admin)).includes(n), n);
    const called = await statelessPost(`${gw.url}/mcp/all`, 'tools/call', { name: 'locked__echo', arguments: { text: 'v2 admin' } }, { headers: { authorization: `Bearer ${admin}` } });
    assert.equal(called.status, 200, called.text);
    assert.deepEqual((rpcOf(called).result as { content: unknown }).content, [{ type: 'text', text: 'v2 admin' }]);
    const from = locked.requests.length;
    const names = await list(await token('mcp'));
    assert.ok(names.includes('open__echo'));
    assert.ok(!names.some((n) => n.startsWith('locked__') || n.startsWith('claimed__')), names.join());
    assert.equal(locked.requests.length, from, 'nothing of the refused caller reached the member');
  });
});

describe("compose: a member that refuses the caller stays out of the caller's session — its initialize answer, its standalone stream", () => {
  let issuer: TestIssuer;
  let open: RecordingUpstream;
  let locked: ScriptedUpstream;
  let gw: Gateway;

  before(async () => {
    [issuer, open, locked] = await Promise.all([startTestIssuer(), startRecordingUpstream({ json: true }), startScriptedUpstream({ instructions: 'LOCKED MEMBER: ask for the vault key first' })]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], publicUrl: PUBLIC },
      servers: {
        open: { upstreams: [{ url: open.url }] },
        locked: { upstreams: [{ url: locked.url }], auth: { scopes: ['admin'] } },
        both: { compose: ['open', 'locked'] },
      },
    });
    // The virtual server's own probe at start (every member, every list) is over.
    await until(() => locked.attempts('resources/templates/list') > 0, 'the probe');
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), open?.close(), locked?.close()]);
  });

  async function initialize(scope: string) {
    const auth = { authorization: `Bearer ${await issuer.sign({ sub: 'someone', aud: `${PUBLIC}/mcp/both`, scope })}` };
    const res = await post(`${gw.url}/mcp/both`, INIT, auth);
    assert.equal(res.status, 200, res.text);
    const sid = res.headers.get('mcp-session-id')!;
    const headers = { ...auth, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    assert.equal((await post(`${gw.url}/mcp/both`, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers)).status, 202);
    return { result: rpcOf(res).result as { instructions?: string; capabilities: { resources?: { subscribe?: boolean } } }, headers };
  }

  it('a refused caller: no session with the member, none of its instructions or capabilities, none of its notifications', async () => {
    const from = locked.attempts('initialize');
    const { result, headers } = await initialize('mcp');
    assert.equal(locked.attempts('initialize'), from, 'the member was not asked to initialize for this caller');
    assert.doesNotMatch(result.instructions ?? '', /LOCKED/);
    assert.notEqual(result.capabilities.resources?.subscribe, true, "the member's capability is not offered");
    const stream = await openGetStream(`${gw.url}/mcp/both`, headers);
    try {
      // The open member's stream is merged in; the locked one is never opened for this caller.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(locked.openStreams, 0, 'no standalone stream of the member for this caller');
      locked.notify('notifications/message', { level: 'info', data: 'LOCKED LOG LINE' });
      await assert.rejects(stream.waitFor('LOCKED LOG LINE', 500), /no "LOCKED LOG LINE"/);
    } finally {
      stream.close();
    }
  });

  it('a caller the member lets in gets all of it', async () => {
    const { result, headers } = await initialize('mcp admin');
    assert.match(result.instructions ?? '', /LOCKED MEMBER/);
    assert.equal(result.capabilities.resources?.subscribe, true);
    const stream = await openGetStream(`${gw.url}/mcp/both`, headers);
    try {
      await until(() => locked.openStreams > 0, "the member's standalone stream");
      locked.notify('notifications/message', { level: 'info', data: 'LOCKED LOG LINE' });
      await stream.waitFor('LOCKED LOG LINE');
    } finally {
      stream.close();
    }
  });

  it("the rule is checked again when the stream opens: a token of the same caller without the scope gets none of the member's notifications", async () => {
    const { headers } = await initialize('mcp admin');
    const weaker = { ...headers, authorization: `Bearer ${await issuer.sign({ sub: 'someone', aud: `${PUBLIC}/mcp/both`, scope: 'mcp' })}` };
    const streams = locked.openStreams;
    const stream = await openGetStream(`${gw.url}/mcp/both`, weaker);
    try {
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(locked.openStreams, streams, 'no standalone stream of the member opened for this token');
      locked.notify('notifications/message', { level: 'info', data: 'LOCKED AGAIN' });
      await assert.rejects(stream.waitFor('LOCKED AGAIN', 500), /no "LOCKED AGAIN"/);
    } finally {
      stream.close();
    }
  });

  it("a 2024-11-05 client: the member's standalone stream is merged for a caller it lets in, not for one it refuses", async () => {
    const legacy = async (scope: string) => {
      const auth = { authorization: `Bearer ${await issuer.sign({ sub: `legacy-${scope}`, aud: `${PUBLIC}/mcp/both`, scope })}` };
      const stream = await LegacyStream.open(`${gw.url}/mcp/both/sse`, auth);
      assert.equal(stream.status, 200);
      await stream.until((events) => events.some((e) => e.event === 'endpoint'));
      await initializeLegacy(stream, stream.endpoint(`${gw.url}/mcp/both/sse`), auth);
      return stream;
    };
    const before = locked.openStreams;
    const refused = await legacy('mcp');
    try {
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(locked.openStreams, before, 'no standalone stream of the member for the refused caller');
    } finally {
      refused.drop();
    }
    const admitted = await legacy('mcp admin');
    try {
      await until(() => locked.openStreams > before, "the member's standalone stream");
      locked.notify('notifications/message', { level: 'info', data: 'LEGACY LOCKED' });
      await admitted.until((events) => events.some((e) => e.data.includes('LEGACY LOCKED')));
    } finally {
      admitted.drop();
    }
  });
});
