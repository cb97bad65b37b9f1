import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { LoggingMessageNotificationSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { exportJWK, SignJWT } from 'jose';
import { stringify } from 'yaml';
import { connectClient, textOf } from '../helpers/client.ts';
import { spawnGateway, TEST_SECRET, type GatewayProcess } from '../helpers/gateway.ts';
import { meta, startEraServer, statelessHeaders, statelessPost, type EraServer } from '../helpers/era.ts';
import { initializeLegacy, LegacyStream } from '../helpers/legacy.ts';
import { INIT, openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { postSse, readSse, slowCount } from '../helpers/sse.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const AUD = 'urn:mcpgw:reload';
const ISSUER = 'https://static.test/';
const STEPS = 100;

/** The log lines after `from` whose msg starts with `msg`; waits for the first one. */
async function nextLog(gw: GatewayProcess, from: number, msg: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    for (const l of gw.child.output.slice(from)) {
      try {
        const v = JSON.parse(l) as Record<string, unknown>;
        if (typeof v.msg === 'string' && v.msg.startsWith(msg)) return v;
      } catch {
        // not a log line
      }
    }
    if (Date.now() > deadline) throw new Error(`no "${msg}" log line; output:\n${gw.child.output.slice(from).join('\n')}`);
    await sleep(20);
  }
}

/** Writes a configuration of just `servers` (auth off) to the process's file, spawnGateway's defaults included. */
function writeServers(gw: GatewayProcess, servers: Record<string, unknown>): void {
  writeFileSync(gw.configFile, stringify({ listen: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 }, session: { secret: TEST_SECRET }, log: { level: 'info' }, servers }));
}

describe('reload on SIGHUP, on a running gateway process', () => {
  let busy: HttpUpstreamProcess;
  let spare: HttpUpstreamProcess;
  let gw: GatewayProcess;
  let keysFile: string;
  const keys: { privateKey: KeyObject; publicKey: KeyObject }[] = [];
  const closers: (() => Promise<unknown>)[] = [];

  const token = (key: number) =>
    new SignJWT({ sub: 'alice', aud: AUD })
      .setProtectedHeader({ alg: 'ES256', kid: `k${key}` })
      .setIssuer(ISSUER)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(keys[key]!.privateKey);
  const writeKeys = async (key: number) => writeFileSync(keysFile, JSON.stringify({ keys: [{ ...(await exportJWK(keys[key]!.publicKey)), kid: `k${key}`, alg: 'ES256', use: 'sig' }] }));
  /** What the config file says, written in full each time (spawnGateway's defaults included). */
  const writeConfig = (servers: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    writeFileSync(
      gw.configFile,
      stringify({
        listen: { host: '127.0.0.1', port: 0 },
        metrics: { host: '127.0.0.1', port: 0 },
        session: { secret: TEST_SECRET },
        log: { level: 'info' },
        auth: { mode: 'jwt', issuers: [{ issuer: ISSUER, keysFile }], audience: AUD },
        servers,
        ...extra,
      }),
    );
  /** Sends SIGHUP and waits for the reload's log line. */
  const hangUp = async (msg = 'configuration reload') => {
    const from = gw.child.output.length;
    gw.child.proc.kill('SIGHUP');
    return nextLog(gw, from, msg);
  };
  const connect = async (server: string, key: number) => {
    const c = await connectClient(`${gw.url}/mcp/${server}`, { headers: { authorization: `Bearer ${await token(key)}` } });
    closers.push(() => c.close().catch(() => {}));
    return c;
  };
  /** What echo answers on this client's session: its text, or the error it got. */
  const echo = async (client: Awaited<ReturnType<typeof connect>>['client']) => {
    try {
      return textOf(await client.callTool({ name: 'echo', arguments: { text: 'hello' } }));
    } catch (err) {
      return `error: ${(err as Error).message}`;
    }
  };
  const metrics = async () => (await fetch(`${gw.metricsUrl}/metrics`)).text();

  before(async () => {
    keys.push(generateKeyPairSync('ec', { namedCurve: 'P-256' }), generateKeyPairSync('ec', { namedCurve: 'P-256' }));
    [busy, spare] = await Promise.all([startDemoUpstream('busy-a'), startDemoUpstream('spare-b')]);
    keysFile = join(mkdtempSync(join(tmpdir(), 'mcpgw-reload-')), 'jwks.json');
    await writeKeys(0);
    gw = await spawnGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: ISSUER, keysFile }], audience: AUD },
      servers: { busy: { upstreams: [{ url: busy.url, name: 'a' }] }, idle: { upstreams: [{ url: spare.url }] } },
    });
  });
  after(async () => {
    for (const close of closers) await close();
    await gw?.stop();
    await Promise.all([busy?.stop(), spare?.stop()]);
  });

  it('applies servers, policies, keys and upstream lists live; refuses bad files; the stream loses nothing', async () => {
    const hashOf = (text: string) => /^mcp_config_info\{hash="([0-9a-f]+)"\} 1$/m.exec(text)?.[1];
    const firstHash = hashOf(await metrics());
    assert.ok(firstHash, 'the loaded configuration is fingerprinted');

    // A session streaming progress on `busy`, and a second server's session, idle.
    const streaming = await connect('busy', 0);
    const progress: number[] = [];
    const call = streaming.client.callTool({ name: 'slow_count', arguments: { count: STEPS, delayMs: 100 } }, undefined, { onprogress: (p) => progress.push(p.progress), timeout: 120_000 });
    // (Awaited at the end; a failure before that must not leave it unhandled.)
    call.catch(() => {});
    const idle = await connect('idle', 0);
    assert.equal(await echo(idle.client), 'hello');
    const side = await connect('busy', 0);
    assert.equal(await echo(side.client), 'hello', 'before the policy change echo is open to everyone');
    while (progress.length < 3) await sleep(20);

    // 1. A new server, and a policy that closes echo on `busy` to callers without scope admin.
    writeConfig({
      busy: { upstreams: [{ url: busy.url, name: 'a' }], auth: { tools: { echo: { scopes: ['admin'] } } } },
      idle: { upstreams: [{ url: spare.url }] },
      fresh: { upstreams: [{ url: spare.url }] },
    });
    const first = await hangUp();
    assert.equal(first.msg, 'configuration reloaded', JSON.stringify(first));
    assert.deepEqual(first.added, ['fresh']);
    assert.deepEqual(first.changed, ['busy'], 'a policy change keeps the pool');
    const fresh = await connect('fresh', 0);
    assert.equal(await echo(fresh.client), 'hello', 'the new server serves');
    assert.notEqual(await echo(side.client), 'hello', 'the policy applies to the next call of an open session');
    assert.equal(await echo(idle.client), 'hello', 'an unchanged server goes on');

    // A stream on the server about to be removed.
    const auth0 = { authorization: `Bearer ${await token(0)}` };
    const doomed = await openSession(`${gw.url}/mcp/idle`, '2025-11-25', auth0);
    const { res: doomedRes } = await postSse(`${gw.url}/mcp/idle`, slowCount(1, 1_000, 100), { ...auth0, ...sessionHeaders(doomed) });
    let doomedSeen = 0;
    const doomedEnd = readSse(doomedRes, () => (doomedSeen++, false));
    while (doomedSeen < 2) await sleep(20);

    // 2. The static key rotated, the idle server removed, busy's replica list replaced.
    await writeKeys(1);
    writeConfig({
      busy: { upstreams: [{ url: spare.url, name: 'b' }], auth: { tools: { echo: { scopes: ['admin'] } } } },
      fresh: { upstreams: [{ url: spare.url }] },
    });
    const second = await hangUp();
    assert.equal(second.msg, 'configuration reloaded', JSON.stringify(second));
    assert.deepEqual(second.removed, ['idle']);
    assert.deepEqual(second.rebuilt, ['busy']);
    assert.equal((await post(`${gw.url}/mcp/fresh`, INIT, { authorization: `Bearer ${await token(0)}` })).status, 401, 'the old key is refused');
    assert.equal((await post(`${gw.url}/mcp/fresh`, INIT, { authorization: `Bearer ${await token(1)}` })).status, 200, 'the new key is taken');
    const gone = await post(`${gw.url}/mcp/idle`, { jsonrpc: '2.0', id: 9, method: 'ping' }, { authorization: `Bearer ${await token(1)}`, 'mcp-session-id': idle.transport.sessionId!, 'mcp-protocol-version': '2025-11-25' });
    assert.equal(gone.status, 404, 'the removed server answers 404');
    const ended = await Promise.race([doomedEnd, sleep(10_000).then(() => undefined)]);
    assert.ok(ended, "the removed server's stream was closed");
    assert.ok(ended.length >= 2 && ended.every((e) => e.id), 'what it carried went out with event ids (resumable from the log)');
    assert.equal(ended.some((e) => e.message?.result), false, 'the call did not finish');
    const moved = await connect('busy', 1);
    assert.equal(textOf(await moved.client.callTool({ name: 'whoami', arguments: {} })), 'spare-b', 'new sessions go to the new replica list');
    const hash = hashOf(await metrics());
    assert.ok(hash && hash !== firstHash, 'the hash follows the configuration');

    // 3. Bad files: an unknown key, a YAML error, an unreadable key file. Nothing changes.
    const broken: [() => void, RegExp][] = [
      [() => writeConfig({ fresh: { upstreams: [{ url: spare.url }], bogus: 1 } }), /servers\.fresh\.bogus/],
      [() => writeFileSync(gw.configFile, 'servers: [unclosed\n'), /not valid YAML/],
      [() => writeConfig({ fresh: { upstreams: [{ url: spare.url }] } }, { auth: { mode: 'jwt', issuers: [{ issuer: ISSUER, keysFile: `${keysFile}.missing` }], audience: AUD } }), /keysFile/],
    ];
    for (const [write, names] of broken) {
      write();
      const refused = await hangUp();
      assert.equal(refused.msg, 'configuration reload refused; the running configuration stays', JSON.stringify(refused));
      assert.match(String(refused.error), names);
    }
    assert.equal(await echo((await connect('fresh', 1)).client), 'hello', 'the running configuration stays');
    assert.equal((await post(`${gw.url}/mcp/busy`, INIT, { authorization: `Bearer ${await token(1)}` })).status, 200, 'busy still published');
    const text = await metrics();
    assert.equal(hashOf(text), hash, 'a refused file leaves the hash');
    assert.match(text, /^mcp_config_reloads_total\{outcome="applied"\} 2$/m);
    assert.match(text, /^mcp_config_reloads_total\{outcome="refused"\} 3$/m);

    // The stream that ran through all of it: every event, in order, on the drained pool.
    assert.ok(progress.length < STEPS, 'the call was still streaming after the last reload');
    assert.equal(textOf(await call), `counted to ${STEPS}`);
    assert.deepEqual(progress, Array.from({ length: STEPS }, (_, i) => i + 1));
  });

  it('a file that says what runs is an unchanged reload', async () => {
    writeConfig({
      busy: { upstreams: [{ url: spare.url, name: 'b' }], auth: { tools: { echo: { scopes: ['admin'] } } } },
      fresh: { upstreams: [{ url: spare.url }] },
    });
    const line = await hangUp();
    assert.deepEqual(line.removed, [], JSON.stringify(line));
    // The file as it ran: nothing to apply (a curated server is not rebuilt by the same file).
    assert.equal(line.outcome, 'unchanged', JSON.stringify(line));
    // Keys that need a restart are named, and kept.
    writeConfig({ busy: { upstreams: [{ url: spare.url, name: 'b' }], auth: { tools: { echo: { scopes: ['admin'] } } } }, fresh: { upstreams: [{ url: spare.url }] } }, { session: { secret: `${TEST_SECRET}-other` }, events: { ttl: '5m' } });
    const kept = await hangUp();
    assert.deepEqual(kept.kept, ['events', 'session.secret'], JSON.stringify(kept));
    assert.match(String(kept.msg), /kept as running.*events, session\.secret/);
    const fresh = await connect('fresh', 1);
    assert.equal(await echo(fresh.client), 'hello');
  });
});

describe('reload when the file changes (--watch-config)', () => {
  let up: HttpUpstreamProcess;
  let gw: GatewayProcess;

  before(async () => {
    up = await startDemoUpstream('watched');
    gw = await spawnGateway({ servers: { one: { upstreams: [{ url: up.url }] } } }, {}, ['--watch-config']);
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
  });

  const write = (servers: Record<string, unknown>) => writeServers(gw, servers);

  it('a new file is applied without a signal; a broken one is refused', async () => {
    assert.equal((await post(`${gw.url}/mcp/two`, INIT)).status, 404);
    let from = gw.child.output.length;
    write({ one: { upstreams: [{ url: up.url }] }, two: { upstreams: [{ url: up.url }] } });
    const applied = await nextLog(gw, from, 'configuration reload');
    assert.equal(applied.trigger, 'watch', JSON.stringify(applied));
    assert.deepEqual(applied.added, ['two']);
    assert.equal((await post(`${gw.url}/mcp/two`, INIT)).status, 200);

    from = gw.child.output.length;
    write({ one: { upstreams: [{ url: up.url }] }, two: { upstreams: [{ url: up.url }], bogus: true } });
    const refused = await nextLog(gw, from, 'configuration reload');
    assert.equal(refused.msg, 'configuration reload refused; the running configuration stays');
    assert.match(String(refused.error), /servers\.two\.bogus/);
    assert.equal((await post(`${gw.url}/mcp/two`, INIT)).status, 200);
  });

  it("a removed server's 2024-11-05 session stream ends, and its messages answer 404", async () => {
    const stream = await LegacyStream.open(`${gw.url}/mcp/two/sse`);
    assert.equal(stream.status, 200);
    await stream.until((events) => events.some((e) => e.event === 'endpoint'));
    const endpoint = stream.endpoint(`${gw.url}/mcp/two/sse`);
    await initializeLegacy(stream, endpoint);
    const from = gw.child.output.length;
    write({ one: { upstreams: [{ url: up.url }] } });
    assert.deepEqual((await nextLog(gw, from, 'configuration reload')).removed, ['two']);
    const deadline = Date.now() + 10_000;
    while (!stream.ended && Date.now() < deadline) await sleep(50);
    assert.ok(stream.ended, 'the stream was closed');
    const res = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }) });
    assert.equal(res.status, 404);
    stream.drop();
  });
});

describe('reload and what translation learnt of an upstream', () => {
  let sessionEra: EraServer;
  let statelessEra: EraServer;
  let gw: GatewayProcess;

  before(async () => {
    [sessionEra, statelessEra] = await Promise.all([startEraServer('session', 'old-session-era'), startEraServer('stateless', 'new-stateless-era')]);
    gw = await spawnGateway({ servers: { x: { upstreams: [{ url: sessionEra.url }] } } });
  });
  after(async () => {
    await gw?.stop();
    await Promise.all([sessionEra?.stop(), statelessEra?.stop()]);
  });

  /** Which upstream process answered a 2026-07-28 tools/call of `stats` on server x. */
  const replica = async () => {
    const res = await statelessPost(`${gw.url}/mcp/x`, 'tools/call', { name: 'stats', arguments: {} });
    assert.equal(res.status, 200, res.text);
    const text = (rpcOf(res).result as { content: { text: string }[] }).content[0]!.text;
    return (JSON.parse(text) as { replica: string }).replica;
  };

  it("a server whose upstream was replaced is asked its era again (era: auto): the old upstream's answer is not kept", async () => {
    // Learnt: x speaks the session era (a 2026-07-28 call is translated).
    assert.equal(await replica(), 'old-session-era');
    writeServers(gw, { x: { upstreams: [{ url: statelessEra.url }] } });
    const from = gw.child.output.length;
    gw.child.proc.kill('SIGHUP');
    assert.deepEqual((await nextLog(gw, from, 'configuration reload')).rebuilt, ['x']);
    // The new upstream speaks 2026-07-28 only: the call goes to it as it is, not into a session it has not.
    assert.equal(await replica(), 'new-stateless-era');
  });

  it('the upstream sessions held for 2026-07-28 clients of a replaced upstream are let go: the next call opens one on the new upstream', async () => {
    const other = await startEraServer('session', 'other-session-era');
    try {
      writeServers(gw, { x: { upstreams: [{ url: sessionEra.url }] } });
      let from = gw.child.output.length;
      gw.child.proc.kill('SIGHUP');
      assert.equal((await nextLog(gw, from, 'configuration reload')).msg, 'configuration reloaded');
      // Translated: a pooled upstream session on the session-era upstream.
      assert.equal(await replica(), 'old-session-era');
      assert.equal(await replica(), 'old-session-era');
      writeServers(gw, { x: { upstreams: [{ url: other.url }] } });
      from = gw.child.output.length;
      gw.child.proc.kill('SIGHUP');
      assert.deepEqual((await nextLog(gw, from, 'configuration reload')).rebuilt, ['x']);
      assert.equal(await replica(), 'other-session-era');
    } finally {
      await other.stop();
    }
  });
});

describe('reload: the standalone GET streams of a replaced pool', () => {
  let kept: HttpUpstreamProcess;
  let added: HttpUpstreamProcess;
  let gw: GatewayProcess;

  before(async () => {
    [kept, added] = await Promise.all([startDemoUpstream('kept-a'), startDemoUpstream('added-b')]);
    gw = await spawnGateway({ servers: { api: { upstreams: [{ url: kept.url, name: 'a' }] } } });
  });
  after(async () => {
    await gw?.stop();
    await Promise.all([kept?.stop(), added?.stop()]);
  });

  it('are handed over at once: the old pool closes when its call in flight is over (not at timeout.max), the client resumes its GET on the new pool and misses nothing', async () => {
    const c = await connectClient(`${gw.url}/mcp/api`);
    try {
      // Log messages the upstream sends outside any request: they come on the standalone GET stream.
      const announced: string[] = [];
      c.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void announced.push(String(n.params.data)));
      const heard = async (text: string) => {
        const deadline = Date.now() + 15_000;
        while (!announced.includes(text) && Date.now() < deadline) await sleep(20);
        assert.ok(announced.includes(text), `"${text}" came on the GET stream; got ${JSON.stringify(announced)}`);
      };
      await c.client.callTool({ name: 'announce', arguments: { text: 'before' } });
      await heard('before');
      const progress: number[] = [];
      const call = c.client.callTool({ name: 'slow_count', arguments: { count: 15, delayMs: 100 } }, undefined, { onprogress: (p) => progress.push(p.progress), timeout: 60_000 });
      call.catch(() => {});
      while (progress.length < 2) await sleep(20);

      // The replica list replaced (the session's replica still in it): a new pool.
      writeServers(gw, { api: { upstreams: [{ url: kept.url, name: 'a' }, { url: added.url, name: 'b' }] } });
      const from = gw.child.output.length;
      gw.child.proc.kill('SIGHUP');
      assert.deepEqual((await nextLog(gw, from, 'configuration reload')).rebuilt, ['api']);
      // The default timeout.max is an hour: only the hand-over lets the old pool go this soon.
      const closed = await nextLog(gw, from, 'replaced upstream pool closed');
      assert.equal(closed.drained, true, JSON.stringify(closed));
      assert.equal((await nextLog(gw, from, 'standalone streams handed over')).streams, 1);
      // The call that ran on the old pool finished there, every step.
      assert.equal(textOf(await call), 'counted to 15');
      assert.deepEqual(progress, Array.from({ length: 15 }, (_, i) => i + 1));

      // The client's GET came back with Last-Event-ID and goes on, through the new pool.
      await c.client.callTool({ name: 'announce', arguments: { text: 'after' } });
      await heard('after');
      assert.deepEqual(announced, ['before', 'after'], 'each message once');
      // It was taken over from the log and the upstream's stream resumed (not a fresh GET).
      assert.match(await (await fetch(`${gw.metricsUrl}/metrics`)).text(), /^mcp_resume_total\{outcome="upstream"\} [1-9]/m);
    } finally {
      await c.close().catch(() => {});
    }
  });
});

describe('reload: the GET stream of a translated session (an SDK 1.x client of a 2026-07-28-only upstream)', () => {
  let a: EraServer;
  let b: EraServer;
  let gw: GatewayProcess;

  before(async () => {
    [a, b] = await Promise.all([startEraServer('stateless', 'modern-a'), startEraServer('stateless', 'modern-b')]);
    gw = await spawnGateway({ servers: { m: { upstreams: [{ url: a.url }] } } });
  });
  after(async () => {
    await gw?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('is handed over when the upstream list is replaced: the client resumes it on the new pool (a new listen upstream) and misses nothing', async () => {
    const c = await connectClient(`${gw.url}/mcp/m`);
    try {
      let changes = 0;
      c.client.setNotificationHandler(ToolListChangedNotificationSchema, () => void changes++);
      const trigger = async () => textOf(await c.client.callTool({ name: 'test_trigger_tool_change', arguments: {} }));
      // The GET stream (a subscriptions/listen upstream) opens after initialize: triggered until it carries a change.
      for (let i = 0; changes === 0 && i < 50; i++) {
        assert.equal(await trigger(), 'tools changed');
        await sleep(200);
      }
      assert.ok(changes > 0, 'the GET stream carries the list changes');
      await sleep(300);
      const before = changes;

      writeServers(gw, { m: { upstreams: [{ url: b.url }] } });
      const from = gw.child.output.length;
      gw.child.proc.kill('SIGHUP');
      assert.deepEqual((await nextLog(gw, from, 'configuration reload')).rebuilt, ['m']);
      assert.equal((await nextLog(gw, from, 'standalone streams handed over')).streams, 1);
      // The default timeout.max is an hour: only the hand-over lets the old pool go this soon.
      assert.equal((await nextLog(gw, from, 'replaced upstream pool closed')).drained, true);

      // The client came back with Last-Event-ID; the stream was taken over and listens on the new upstream.
      const resumed = async () => /^mcp_resume_total\{outcome="upstream"\} [1-9]/m.test(await (await fetch(`${gw.metricsUrl}/metrics`)).text());
      for (let i = 0; !(await resumed()) && i < 100; i++) await sleep(100);
      assert.ok(await resumed(), 'the GET stream was resumed and taken over');
      await sleep(500);
      assert.equal(await trigger(), 'tools changed');
      for (let i = 0; changes === before && i < 100; i++) await sleep(100);
      await sleep(300);
      assert.equal(changes, before + 1, 'the change on the new upstream arrived, once');
    } finally {
      await c.close().catch(() => {});
    }
  });
});

describe('reload: what translation holds for 2026-07-28 clients on a replaced or removed pool', () => {
  let a: EraServer;
  let b: EraServer;
  let recording: RecordingUpstream;
  let gw: GatewayProcess;

  before(async () => {
    [a, b, recording] = await Promise.all([startEraServer('session', 'session-a'), startEraServer('session', 'session-b'), startRecordingUpstream({ json: true })]);
    gw = await spawnGateway({ servers: { y: { upstreams: [{ url: a.url }] }, rec: { upstreams: [{ url: recording.url }] } } });
  });
  after(async () => {
    await gw?.stop();
    await Promise.all([a?.stop(), b?.stop(), recording?.close()]);
  });

  /** A 2026-07-28 subscriptions/listen for tool list changes on server y, read as it comes. */
  const listen = async (id: string) => {
    const params = { notifications: { toolsListChanged: true }, _meta: meta() };
    const res = await fetch(`${gw.url}/mcp/y`, { method: 'POST', headers: statelessHeaders('subscriptions/listen', params), body: JSON.stringify({ jsonrpc: '2.0', id, method: 'subscriptions/listen', params }) });
    assert.equal(res.status, 200);
    const seen: Record<string, unknown>[] = [];
    let ended = false;
    const reading = readSse(res, (e) => {
      if (e.message) seen.push(e.message as Record<string, unknown>);
      return false;
    }).finally(() => (ended = true));
    const until = async (what: string, check: () => boolean) => {
      for (let i = 0; !check() && i < 150; i++) await sleep(100);
      assert.ok(check(), `${what}; got ${JSON.stringify(seen)}`);
    };
    await until('the acknowledgment', () => seen.some((m) => m.method === 'notifications/subscriptions/acknowledged'));
    return { seen, until, reading, ended: () => ended };
  };
  const triggerChange = async () => assert.equal(rpcOf(await statelessPost(`${gw.url}/mcp/y`, 'tools/call', { name: 'test_trigger_tool_change', arguments: {} })).error, undefined);
  const changes = (seen: Record<string, unknown>[]) => seen.filter((m) => m.method === 'notifications/tools/list_changed').length;

  it('a listen stream on a replaced pool is handed over: it ends with its answer, the old pool closes at once (not at timeout.max), listening again goes to the new pool', async () => {
    const first = await listen('L1');
    await triggerChange();
    await first.until('a change on the listen stream', () => changes(first.seen) === 1);

    writeServers(gw, { y: { upstreams: [{ url: a.url }, { url: b.url }] }, rec: { upstreams: [{ url: recording.url }] } });
    const from = gw.child.output.length;
    gw.child.proc.kill('SIGHUP');
    assert.deepEqual((await nextLog(gw, from, 'configuration reload')).rebuilt, ['y']);
    // Its answer ends the subscription, as when the upstream ends it; the client listens again.
    await first.until('the listen answered and ended', () => first.ended() && first.seen.at(-1)?.id === 'L1');
    assert.equal((first.seen.at(-1)!.result as Record<string, unknown>).resultType, 'complete');
    // The default timeout.max is an hour: only the hand-over lets the old pool go this soon.
    assert.equal((await nextLog(gw, from, 'replaced upstream pool closed')).drained, true);

    const again = await listen('L2');
    await triggerChange();
    await again.until('a change on the new listen stream', () => changes(again.seen) === 1);
    assert.equal(changes(first.seen), 1, 'the ended stream got nothing more');
  });

  it("a removed server's upstream sessions are ended (DELETE upstream) before its pool is closed", async () => {
    const res = await statelessPost(`${gw.url}/mcp/rec`, 'tools/call', { name: 'echo', arguments: { text: 'held' } });
    assert.equal(res.status, 200, res.text);
    const held = recording.requests.find((r) => r.method === 'POST' && r.body.includes('"tools/call"'))?.headers['mcp-session-id'];
    assert.ok(typeof held === 'string', 'the call went on a session the gateway holds upstream');

    writeServers(gw, { y: { upstreams: [{ url: a.url }, { url: b.url }] } });
    const from = gw.child.output.length;
    gw.child.proc.kill('SIGHUP');
    assert.deepEqual((await nextLog(gw, from, 'configuration reload')).removed, ['rec']);
    const ended = () => recording.requests.some((r) => r.method === 'DELETE' && r.headers['mcp-session-id'] === held);
    for (let i = 0; !ended() && i < 50; i++) await sleep(100);
    assert.ok(ended(), 'the session was ended upstream, not left to its timeout');
  });
});

describe('reload of a file caught half-written', () => {
  let up: HttpUpstreamProcess;
  let gw: GatewayProcess;
  const servers = (url: string) => ({ one: { upstreams: [{ url }], curation: { tools: { exclude: ['echo'] } } }, two: { upstreams: [{ url }] } });
  const text = (url: string) => stringify({ listen: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 }, session: { secret: TEST_SECRET }, log: { level: 'info' }, servers: servers(url) });

  before(async () => {
    up = await startDemoUpstream('half-written');
    gw = await spawnGateway({ servers: servers(up.url) });
  });
  after(async () => {
    await gw?.stop();
    await up?.stop();
  });

  it('a SIGHUP while the file is being written applies the file once it is whole, not the half it caught', async () => {
    const whole = text(up.url);
    writeFileSync(gw.configFile, whole);
    let from = gw.child.output.length;
    gw.child.proc.kill('SIGHUP');
    assert.equal((await nextLog(gw, from, 'configuration reload')).msg, 'configuration reloaded');
    // Cut before `one`'s curation: still valid YAML, without the exclude and without server `two`.
    const half = whole.slice(0, whole.indexOf('    curation:'));
    writeFileSync(gw.configFile, half);
    from = gw.child.output.length;
    gw.child.proc.kill('SIGHUP');
    await sleep(50);
    writeFileSync(gw.configFile, whole);
    const line = await nextLog(gw, from, 'configuration reload');
    assert.deepEqual(line.removed, [], JSON.stringify(line));
    // The file as it ran: nothing to apply (a curated server is not rebuilt by the same file).
    assert.equal(line.outcome, 'unchanged', JSON.stringify(line));
    assert.equal((await post(`${gw.url}/mcp/two`, INIT)).status, 200, 'server two is still served');
    const sid = await openSession(`${gw.url}/mcp/one`);
    const list = await post(`${gw.url}/mcp/one`, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, sessionHeaders(sid));
    assert.doesNotMatch(list.text, /"name":"echo"/, 'echo is still excluded');
  });
});
