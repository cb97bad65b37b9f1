import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { startGateway, TEST_SECRET } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { startPolicyUpstream, type PolicyUpstream } from '../helpers/policy-upstream.ts';
import { meta, startEraServer, statelessPost, type EraServer } from '../helpers/era.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { until } from '../helpers/streams.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

type Client = Awaited<ReturnType<typeof connectClient>>['client'];

/** Rejects with the gateway code `code` (in the JSON-RPC error's data, or the HTTP error's body). */
async function failsWith(call: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(call, (err: Error & { data?: unknown }) => {
    assert.ok(`${err.message} ${JSON.stringify(err.data ?? null)}`.includes(code), `${code} expected, got: ${err.message}`);
    return true;
  });
}

const silent = (client: Client, ms: number) => client.callTool({ name: 'silent', arguments: { ms } });

describe('limits per tool (SDK client, SDK upstream)', () => {
  let up: PolicyUpstream;
  let gw: Gateway;
  const clients: { close: () => Promise<void> }[] = [];
  const connect = async (server: string) => {
    const c = await connectClient(`${gw.url}/mcp/${server}`);
    clients.push(c);
    return c.client;
  };

  before(async () => {
    up = await startPolicyUpstream('session');
    const upstreams = [{ url: up.url }];
    gw = await startGateway({
      servers: {
        idle: { upstreams, timeout: { idle: '10s', max: '1m' }, tools: { silent: { timeout: { idle: '400ms' } } } },
        max: { upstreams, timeout: { idle: '10s', max: '1m' }, tools: { ticking: { timeout: { max: '800ms' } } } },
        // maxFails 0: the failures must not eject the only replica.
        retry: { upstreams, maxFails: 0, retry: { attempts: 3, backoff: '10ms' }, tools: { limited: { retry: { attempts: 1 } } } },
        capped: { upstreams, tools: { silent: { concurrency: 2, timeout: { idle: '3s' } } } },
        composed: { compose: ['capped'] },
      },
    });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await gw?.close();
    await up?.close();
  });

  it("a tool's own idle limit ends its silent call; another tool of the server keeps the server's", async () => {
    const client = await connect('idle');
    await failsWith(silent(client, 1_500), 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    // As silent for as long, without progress (no progressToken): the server's 10 s idle limit.
    assert.equal(textOf(await client.callTool({ name: 'ticking', arguments: { ms: 1_500 } })), 'ticking done');
  });

  it("a tool's own max limit ends its call despite progress; another tool keeps the server's", async () => {
    const client = await connect('max');
    const progress: number[] = [];
    await failsWith(
      client.callTool({ name: 'ticking', arguments: { ms: 3_000 } }, undefined, { onprogress: (p) => void progress.push(p.progress) }),
      'MCPGW_ERR_UPSTREAM_TIMEOUT',
    );
    assert.ok(progress.length > 0, 'it made progress, and still ran into its max');
    assert.equal(textOf(await silent(client, 1_200)), 'silent done');
  });

  it("a tool's own retry attempts: 1 is sent once while the server retries its other safe tools", async () => {
    const client = await connect('retry');
    await client.listTools(); // the gateway learns which tools are read-only
    const lookups = up.attempts('tools/call lookup');
    up.fail('tools/call lookup', 1, 503);
    assert.equal(textOf(await client.callTool({ name: 'lookup', arguments: {} })), 'lookup done');
    assert.equal(up.attempts('tools/call lookup') - lookups, 2, 'retried after the 503');

    const limited = up.attempts('tools/call limited');
    up.fail('tools/call limited', 1, 503);
    // The upstream's 503 reaches the caller: no second try.
    await assert.rejects(client.callTool({ name: 'limited', arguments: {} }), /overloaded|503/);
    assert.equal(up.attempts('tools/call limited') - limited, 1, 'not retried');
  });

  it('a caller runs at most `concurrency` calls of a tool at once; a finished or timed-out call frees its slot', async () => {
    const client = await connect('capped');
    const url = `${gw.url}/mcp/capped`;
    const sid = await openSession(url);
    const arrived = up.attempts('tools/call silent');
    const short = silent(client, 600);
    const long = silent(client, 20_000); // ends by the tool's 3 s idle limit
    const longFails = failsWith(long, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    await until(() => up.attempts('tools/call silent') - arrived === 2, 'both calls at the upstream');

    // The same caller (auth off: its address), through another session: refused, and never sent.
    const third = await post(url, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'silent', arguments: { ms: 10 } } }, sessionHeaders(sid));
    assert.equal(third.status, 429, third.text);
    assert.equal(rpcOf(third).error?.data?.code, 'MCPGW_ERR_RATE_LIMITED');
    assert.match(rpcOf(third).error!.message, /at most 2 calls of tool "silent" at once/);
    assert.equal(third.headers.get('retry-after'), null, 'no Retry-After: nobody knows when a slot frees');
    assert.equal(up.attempts('tools/call silent') - arrived, 2);
    // Other tools of the server are not capped.
    assert.equal(textOf(await client.callTool({ name: 'lookup', arguments: {} })), 'lookup done');

    assert.equal(textOf(await short), 'silent done');
    assert.equal(textOf(await silent(client, 10)), 'silent done', 'the finished call gave its slot back');

    const other = silent(client, 20_000);
    const otherFails = failsWith(other, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    await until(() => up.attempts('tools/call silent') - arrived === 4, 'the next call at the upstream');
    await failsWith(silent(client, 10), 'MCPGW_ERR_RATE_LIMITED');
    await longFails;
    assert.equal(textOf(await silent(client, 10)), 'silent done', 'the timed-out call gave its slot back');
    await otherFails;
  });

  it('a batch counts each call of the tool; a call sent as a notification or as a task is refused', async () => {
    const url = `${gw.url}/mcp/capped`;
    const sid = await openSession(url, '2025-03-26');
    const call = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'silent', arguments: { ms: 10 } } });
    const done = up.done('tools/call silent');
    const res = await post(url, [call(1), call(2), call(3)], sessionHeaders(sid, '2025-03-26'));
    assert.equal(res.status, 429, res.text);
    assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_RATE_LIMITED');
    const two = await post(url, [call(1), call(2)], sessionHeaders(sid, '2025-03-26'));
    assert.equal(two.status, 200, two.text);
    assert.equal(up.done('tools/call silent') - done, 2, 'the batch of two ran, none of the batch of three');
    // A call without an id would run uncounted beside the cap.
    const arrived = up.attempts('tools/call silent');
    const { id: _, ...notification } = call(4);
    const uncounted = await post(url, notification, sessionHeaders(sid, '2025-03-26'));
    assert.equal(uncounted.status, 429, uncounted.text);
    assert.equal(up.attempts('tools/call silent'), arrived, 'never sent');
    // Nor would a call run as a task (2025-11-25): answered at once, the tool runs on unseen.
    const task = { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'silent', arguments: { ms: 10 }, task: { ttl: 60_000 } } };
    const tasked = await post(url, task, sessionHeaders(sid, '2025-03-26'));
    assert.equal(tasked.status, 429, tasked.text);
    assert.match(rpcOf(tasked).error!.message, /as a task cannot be counted/);
    assert.equal(up.attempts('tools/call silent'), arrived, 'never sent');
  });

  it("a virtual server's calls of a member count against the caller's cap, whichever virtual session they come by", async () => {
    const url = `${gw.url}/mcp/composed`;
    const [a, b] = await Promise.all([openSession(url), openSession(url)]);
    const call = (sid: string, id: number, ms: number) => post(url, { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'capped__silent', arguments: { ms } } }, sessionHeaders(sid));
    const arrived = up.attempts('tools/call silent');
    const running = [call(a, 1, 1_500), call(b, 2, 1_500)];
    await until(() => up.attempts('tools/call silent') - arrived === 2, 'both calls at the upstream');
    // The same caller (auth off: its address): a third session does not make a new caller.
    const c = await openSession(url);
    const third = await call(c, 3, 10);
    assert.equal(third.status, 429, third.text);
    assert.equal(rpcOf(third).error?.data?.code, 'MCPGW_ERR_RATE_LIMITED');
    assert.equal(up.attempts('tools/call silent') - arrived, 2, 'never sent');
    for (const r of await Promise.all(running)) assert.equal(r.status, 200, r.text);
  });
});

describe('concurrency of calls parked for input (2026-07-28 client, session-era upstream)', () => {
  let demo: HttpUpstreamProcess;
  /** A demo upstream of its own, stopped by a test. */
  let fragile: HttpUpstreamProcess;
  let rounds: EraServer;
  let gw: Gateway;
  /** The same, with a short translation.inputTimeout. */
  let brief: Gateway;
  const capped = (url: string, tool: string) => ({ upstreams: [{ url }], era: 'session', tools: { [tool]: { concurrency: 1 } } });
  let servers: Record<string, unknown>;

  before(async () => {
    [demo, fragile, rounds] = await Promise.all([startDemoUpstream('demo'), startDemoUpstream('fragile'), startEraServer('session')]);
    servers = { asking: capped(demo.url, 'ask_name'), removable: capped(demo.url, 'ask_name'), fragile: { ...capped(fragile.url, 'ask_name'), timeout: { idle: '1s' } }, rounds: capped(rounds.url, 'test_input_required_result_multi_round') };
    [gw, brief] = await Promise.all([startGateway({ servers }), startGateway({ servers, translation: { inputTimeout: '1s' } })]);
  });
  after(async () => {
    await Promise.all([gw?.close(), brief?.close()]);
    await Promise.all([demo?.stop(), fragile?.stop(), rounds?.stop()]);
  });

  type Answer = { status: number; text: string; rpc: { result?: Record<string, unknown>; error?: { message: string; data?: { code?: string } } } };
  /** ask_name (it asks for a name: elicitation) from a client that can answer; `retry` carries a parked call's requestState and answers. */
  const ask = async (at: Gateway, id: number, retry: Record<string, unknown> = {}, server = 'asking', tool = 'ask_name'): Promise<Answer> => {
    const res = await statelessPost(`${at.url}/mcp/${server}`, 'tools/call', { name: tool, arguments: {}, ...retry, _meta: meta({ elicitation: {} }) }, { id });
    return { status: res.status, text: res.text, rpc: rpcOf(res) as Answer['rpc'] };
  };
  const parked = (a: Answer) => {
    assert.equal(a.status, 200, a.text);
    assert.equal(a.rpc.result?.resultType, 'input_required', a.text);
    return a.rpc.result!.requestState as string;
  };
  const refused = (a: Answer) => {
    assert.equal(a.status, 429, a.text);
    assert.equal(a.rpc.error?.data?.code, 'MCPGW_ERR_RATE_LIMITED', a.text);
  };
  const name = (n: string) => ({ elicitation: { action: 'accept', content: { name: n } } });

  it('a parked call holds its slot until it ends; the retry that carries its input goes on with it, taking no other', async () => {
    const state = parked(await ask(gw, 1));
    // The call is parked upstream (the elicitation is unanswered): it runs, and holds the only slot.
    refused(await ask(gw, 2));
    refused(await ask(gw, 3));
    assert.equal(gw.pipeline.running, 1);
    // A retry that answers nothing is asked again: the call stays parked, its slot held.
    const again = parked(await ask(gw, 4, { requestState: state, inputResponses: {} }));
    refused(await ask(gw, 5));
    const done = await ask(gw, 6, { requestState: again, inputResponses: name('Ada') });
    assert.equal(done.status, 200, done.text);
    assert.equal(textOf(done.rpc.result), 'Hello, Ada!');
    assert.equal(gw.pipeline.running, 0, 'the answered call gave its slot back');
    // A new call is accepted (and parks in turn); answered, it gives its slot back too.
    const next = parked(await ask(gw, 7));
    assert.equal(textOf((await ask(gw, 8, { requestState: next, inputResponses: name('Bo') })).rpc.result), 'Hello, Bo!');
    assert.equal(gw.pipeline.running, 0);
  });

  it('a parked call not retried within translation.inputTimeout gives its slot back', async () => {
    const state = parked(await ask(brief, 1));
    refused(await ask(brief, 2));
    await until(() => brief.pipeline.running === 0, 'the parked call given up (1 s)');
    const next = parked(await ask(brief, 3));
    // The late retry names a call that is over: it goes on with nothing, and takes no slot from the new call.
    const late = await ask(brief, 4, { requestState: state, inputResponses: name('Ada') });
    assert.ok(late.status >= 400, late.text);
    assert.equal(brief.pipeline.running, 1, "the new call's slot is held");
    refused(await ask(brief, 5));
    assert.equal(textOf((await ask(brief, 6, { requestState: next, inputResponses: name('Bo') })).rpc.result), 'Hello, Bo!');
    assert.equal(brief.pipeline.running, 0);
  });

  it('a call asking again after its retry stays parked on the same slot', async () => {
    const multi = (id: number, retry: Record<string, unknown> = {}) => ask(gw, id, retry, 'rounds', 'test_input_required_result_multi_round');
    const first = parked(await multi(1));
    refused(await multi(2));
    // The retry answers step 1; the upstream asks step 2 on the same call: parked again, on its slot.
    const second = parked(await multi(3, { requestState: first, inputResponses: name('Ada') }));
    assert.equal(gw.pipeline.running, 1);
    refused(await multi(4));
    const done = await multi(5, { requestState: second, inputResponses: { elicitation: { action: 'accept', content: { city: 'Paris' } } } });
    assert.equal(textOf(done.rpc.result), 'Both rounds done', done.text);
    assert.equal(gw.pipeline.running, 0);
  });

  it('a parked call whose upstream went away gives its slot back when its retry fails', async () => {
    const state = parked(await ask(gw, 1, {}, 'fragile'));
    refused(await ask(gw, 2, {}, 'fragile'));
    await fragile.child.kill('SIGKILL'); // at once: it would wait for the parked call's stream
    // The call's upstream stream is gone, and so is the upstream (the time limit, 1 s idle, bounds any wait).
    const failed = await ask(gw, 3, { requestState: state, inputResponses: name('Ada') }, 'fragile');
    assert.ok(failed.rpc.error !== undefined, failed.text);
    assert.equal(gw.pipeline.running, 0);
  });

  it('a reload removing the server ends its parked calls, giving their slots back', async () => {
    parked(await ask(brief, 1, {}, 'removable'));
    assert.equal(brief.pipeline.running, 1);
    const { removable: _, ...kept } = servers;
    const doc = { listen: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 }, session: { secret: TEST_SECRET }, log: { level: 'silent' }, translation: { inputTimeout: '1s' }, servers: kept };
    brief.reconfigure(loadConfig({ document: doc, env: {} }).config);
    assert.equal(brief.pipeline.running, 0, 'at once, not at translation.inputTimeout');
  });
});

describe('concurrency per caller (auth on)', () => {
  const AUD = 'urn:mcpgw:test';
  let issuer: TestIssuer;
  let up: PolicyUpstream;
  let gw: Gateway;
  const clients: { close: () => Promise<void> }[] = [];

  before(async () => {
    [issuer, up] = await Promise.all([startTestIssuer(), startPolicyUpstream('session')]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD },
      servers: { api: { upstreams: [{ url: up.url }], tools: { silent: { concurrency: 1, timeout: { idle: '2s' } } } } },
    });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await gw?.close();
    await Promise.all([issuer?.close(), up?.close()]);
  });

  it('each caller has its own cap', async () => {
    const as = async (sub: string) => {
      const c = await connectClient(`${gw.url}/mcp/api`, { headers: { authorization: `Bearer ${await issuer.sign({ sub, aud: AUD })}` } });
      clients.push(c);
      return c.client;
    };
    const [alice, bob] = await Promise.all([as('alice'), as('bob')]);
    const arrived = up.attempts('tools/call silent');
    const running = failsWith(silent(alice, 20_000), 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    await until(() => up.attempts('tools/call silent') - arrived === 1, "alice's call at the upstream");
    await failsWith(silent(alice, 10), 'MCPGW_ERR_RATE_LIMITED');
    assert.equal(textOf(await silent(bob, 10)), 'silent done', "alice's calls do not count against bob");
    await running;
  });
});

describe('per-address caps behind a proxy (auth off, listen.trustProxy naming the proxy)', () => {
  let up: PolicyUpstream;
  let gw: Gateway;

  before(async () => {
    up = await startPolicyUpstream('session');
    gw = await startGateway({
      // This test's client plays the proxy: it connects from loopback and appends the address it saw.
      listen: { host: '127.0.0.1', port: 0, trustProxy: ['loopback'] },
      servers: { api: { upstreams: [{ url: up.url }], tools: { silent: { concurrency: 1, timeout: { idle: '3s' } } } } },
    });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  it("a client's own X-Forwarded-For entries do not make it another caller", async () => {
    const url = `${gw.url}/mcp/api`;
    // What the proxy sends on: the client's made-up entry, then the address the proxy saw.
    const from = (spoofed: string) => ({ 'x-forwarded-for': `${spoofed}, 203.0.113.7` });
    const sid = await openSession(url, '2025-11-25', from('198.51.100.1'));
    const call = (spoofed: string, id: number, ms: number) => post(url, { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'silent', arguments: { ms } } }, { ...sessionHeaders(sid), ...from(spoofed) });
    const arrived = up.attempts('tools/call silent');
    const running = call('198.51.100.1', 1, 1_000);
    await until(() => up.attempts('tools/call silent') - arrived === 1, 'the first call at the upstream');
    const second = await call('198.51.100.2', 2, 10);
    assert.equal(second.status, 429, second.text);
    assert.equal(up.attempts('tools/call silent') - arrived, 1, 'never sent');
    assert.equal((await running).status, 200);
  });

  it('a trustProxy entry that is no address is refused at start', async () => {
    await assert.rejects(startGateway({ listen: { host: '127.0.0.1', port: 0, trustProxy: ['10.0.0.0/33'] }, servers: { api: { upstreams: [{ url: up.url }] } } }), /listen\.trustProxy: "10\.0\.0\.0\/33"/);
  });
});
