import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ERRORS } from '../../src/errors.ts';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient } from '../helpers/client.ts';
import { connectV2 } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { connectLegacyClient } from '../helpers/legacy.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { startPolicyUpstream, type PolicyUpstream } from '../helpers/policy-upstream.ts';
import { until } from '../helpers/streams.ts';

/**
 * Every policy on every front door, as a table: one `describe` per door (each with the real client
 * users run), one `it` per policy. Every door has a server (and an upstream) of its own with the
 * same policies, so no cell spends another door's limit or warms its cache:
 *
 *   rate limit 2 calls of `limited` a minute · result cache 1 min · idle 1.5 s, max 3 s ·
 *   3 tries of a safe call · auth on, `secret` needs a scope the caller lacks · audit log on.
 *
 * The `compose` door's server is virtual; its only member holds the policies.
 */

const IDLE_MS = 1_500;
const MAX_MS = 3_000;
/** Longest a client waits for one answer: past the time limits, short of a hang. */
const CLIENT_TIMEOUT_MS = 8_000;
/** Setting up and tearing down are bounded too. */
const HOOK = { timeout: 30_000 };

const POLICIES = {
  maxFails: 0, // the retry cell's 503 must not eject the only replica
  rateLimit: { tools: { limited: { requests: 2, per: '1m' } } },
  cache: { ttl: '1m' },
  retry: { backoff: '10ms' },
  timeout: { idle: `${IDLE_MS}ms`, max: `${MAX_MS}ms` },
  auth: { tools: { secret: { scopes: ['admin'] } } },
};

interface RpcError {
  code: number;
  message: string;
}
/** What the client got: a result, or a JSON-RPC error as the client library reports it. */
interface Outcome {
  result?: { content?: { text?: string }[]; contents?: { text?: string }[]; isError?: boolean };
  error?: RpcError;
}

/** One connected client, whichever library. */
interface Caller {
  call(name: string, args?: Record<string, unknown>, onprogress?: (progress: number) => void): Promise<Outcome>;
  read(uri: string): Promise<Outcome>;
  tools(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * The JSON-RPC error in what a client library threw. An answer with an HTTP error status (429,
 * 504) reaches the SDK 1.x transports as an HTTP error whose text is the JSON-RPC body.
 */
function rpcErrorOf(err: unknown): RpcError {
  const e = err as { code?: unknown; message?: unknown };
  const message = String(e?.message ?? err);
  const body = message.indexOf('{"');
  if (body >= 0) {
    try {
      const parsed = JSON.parse(message.slice(body)) as { error?: RpcError };
      if (typeof parsed.error?.code === 'number') return { code: parsed.error.code, message: parsed.error.message };
    } catch {
      // not a JSON-RPC body
    }
  }
  return { code: typeof e?.code === 'number' ? e.code : Number.NaN, message };
}

async function outcome(p: Promise<unknown>): Promise<Outcome> {
  try {
    return { result: (await p) as Outcome['result'] };
  } catch (err) {
    return { error: rpcErrorOf(err) };
  }
}

/** `p`, or an error after `ms`: no await in this file waits for ever. */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no end after ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

type V1Client = Awaited<ReturnType<typeof connectClient>>['client'];
type V2Client = Awaited<ReturnType<typeof connectV2>>['client'];

/** SDK 1.x (`@modelcontextprotocol/sdk`): Streamable HTTP and the 2024-11-05 SSEClientTransport. */
function v1Caller(client: V1Client): Caller {
  const opts = (onprogress?: (p: number) => void) => ({ timeout: CLIENT_TIMEOUT_MS, ...(onprogress ? { onprogress: (p: { progress: number }) => onprogress(p.progress) } : {}) });
  return {
    call: (name, args = {}, onprogress) => outcome(client.callTool({ name, arguments: args }, undefined, opts(onprogress))),
    read: (uri) => outcome(client.readResource({ uri }, opts())),
    tools: async () => (await client.listTools(undefined, opts())).tools.map((t) => t.name),
    close: () => within(5_000, 'closing the client', client.close()),
  };
}

/** SDK 2.x (`@modelcontextprotocol/client`); its own response cache is bypassed, so every read reaches the gateway. */
function v2Caller(client: V2Client): Caller {
  const opts = (onprogress?: (p: number) => void) => ({ timeout: CLIENT_TIMEOUT_MS, ...(onprogress ? { onprogress: (p: { progress: number }) => onprogress(p.progress) } : {}) });
  return {
    call: (name, args = {}, onprogress) => outcome(client.callTool({ name, arguments: args }, opts(onprogress))),
    read: (uri) => outcome(client.readResource({ uri }, { ...opts(), cacheMode: 'bypass' })),
    tools: async () => (await client.listTools(undefined, { ...opts(), cacheMode: 'bypass' })).tools.map((t) => t.name),
    close: () => within(5_000, 'closing the client', client.close()),
  };
}

async function modern(connecting: ReturnType<typeof connectV2>): Promise<Caller> {
  const { client } = await connecting;
  // `auto` must land on 2026-07-28 at the gateway, or this row would test the session door again.
  if (client.getProtocolEra() !== 'modern') {
    await client.close();
    throw new Error(`the SDK 2.x client negotiated ${String(client.getProtocolEra())}, not 2026-07-28`);
  }
  return v2Caller(client);
}

interface Door {
  readonly name: string;
  /** The gateway server the client talks to. */
  readonly server: string;
  /** The era of this door's upstream. */
  readonly era: 'session' | 'stateless';
  /** compose: the member (with the policies) of the virtual server `server`. */
  readonly member?: string;
  connect(url: string, headers: Record<string, string>): Promise<Caller>;
}

const DOORS: readonly Door[] = [
  {
    name: 'session-era client (SDK 1.x, Streamable HTTP)',
    server: 'session-era',
    era: 'session',
    connect: async (url, headers) => v1Caller((await connectClient(url, { headers })).client),
  },
  {
    name: '2026-07-28 client (SDK 2.x, auto) forwarded to a 2026-07-28 upstream',
    server: 'forwarded',
    era: 'stateless',
    connect: (url, headers) => modern(connectV2(url, { mode: 'auto', headers })),
  },
  {
    name: '2026-07-28 client (SDK 2.x, auto) translated to a session-era upstream',
    server: 'translated',
    era: 'session',
    connect: (url, headers) => modern(connectV2(url, { mode: 'auto', headers })),
  },
  {
    name: 'session-era client (SDK 1.x) of a 2026-07-28-only upstream (the gateway holds the session)',
    server: 'held',
    era: 'stateless',
    connect: async (url, headers) => v1Caller((await connectClient(url, { headers })).client),
  },
  {
    name: '2024-11-05 client (SDK 1.x SSEClientTransport)',
    server: 'legacy',
    era: 'session',
    connect: async (url, headers) => v1Caller((await connectLegacyClient(`${url}/sse`, { headers })).client),
  },
  {
    name: 'compose server (SDK 1.x session-era client), its member has the policies',
    server: 'composed',
    era: 'session',
    member: 'member',
    connect: async (url, headers) => v1Caller((await connectClient(url, { headers })).client),
  },
  {
    name: 'compose server (2026-07-28 client, SDK 2.x auto, translated), its member has the policies',
    server: 'composed-modern',
    era: 'session',
    member: 'modern-member',
    connect: (url, headers) => modern(connectV2(url, { mode: 'auto', headers })),
  },
  {
    name: 'compose server (2024-11-05 client, SDK 1.x SSEClientTransport), its member has the policies',
    server: 'composed-legacy',
    era: 'session',
    member: 'legacy-member',
    connect: async (url, headers) => v1Caller((await connectLegacyClient(`${url}/sse`, { headers })).client),
  },
];

/** Every series of the Prometheus text, as `name{k="v",…}` (labels sorted) → value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    out.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return out;
}

const seriesKey = (name: string, labels: Record<string, string>) =>
  `${name}{${Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort()
    .join(',')}}`;

describe('every policy on every front door', () => {
  let issuer: TestIssuer;
  let gw: Gateway;
  let dir: string;
  let auditFile: string;
  let headers: Record<string, string>;
  const upstreams = new Map<string, PolicyUpstream>();

  before(async () => {
    issuer = await startTestIssuer();
    for (const door of DOORS) upstreams.set(door.server, await startPolicyUpstream(door.era));
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-policies-'));
    auditFile = join(dir, 'audit.log');
    const servers: Record<string, unknown> = {};
    for (const door of DOORS) {
      const own = { upstreams: [{ url: upstreams.get(door.server)!.url }], ...POLICIES };
      if (door.member) Object.assign(servers, { [door.member]: own, [door.server]: { compose: [door.member] } });
      else servers[door.server] = own;
    }
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: 'mcp' },
      audit: { enabled: true, destination: auditFile },
      servers,
    });
    // A caller with the everyday scope, not `admin`: `secret` is hidden from it.
    headers = { authorization: `Bearer ${await issuer.sign({ sub: 'table-caller', aud: 'mcp', scope: 'mcp' })}` };
  }, HOOK);
  after(async () => {
    await gw?.close();
    await Promise.all([...upstreams.values()].map((u) => u.close()));
    await issuer?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, HOOK);

  /** The gateway's /metrics, scraped. */
  async function scrape(): Promise<Map<string, number>> {
    const res = await fetch(`${gw.metricsUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
    return parseMetrics(await res.text());
  }

  /** The counters once the previous cell's requests are all accounted (two scrapes 100 ms apart agree). */
  async function settled(): Promise<Map<string, number>> {
    const counts = (m: Map<string, number>) => JSON.stringify([...m].filter(([k]) => /^mcp_(requests|errors)_total\{/.test(k)));
    let last = await scrape();
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const now = await scrape();
      if (counts(now) === counts(last)) return now;
      last = now;
    }
    return last;
  }

  /** Waits until the series moved by `want` since `before` (accounting may end after the answer), then asserts it. */
  async function expectMoved(before: Map<string, number>, want: Record<string, number>): Promise<void> {
    const moved = async () => {
      const now = await scrape();
      return Object.fromEntries(Object.keys(want).map((k) => [k, (now.get(k) ?? 0) - (before.get(k) ?? 0)]));
    };
    await until(async () => JSON.stringify(await moved()) === JSON.stringify(want), 'the counters to settle').catch(() => {});
    assert.deepEqual(await moved(), want);
  }

  /** The audit lines written since `offset` lines. */
  function auditSince(offset: number): Record<string, unknown>[] {
    gw.audit!.flush();
    let text = '';
    try {
      text = readFileSync(auditFile, 'utf8');
    } catch {
      return []; // not written yet
    }
    return text
      .split('\n')
      .filter(Boolean)
      .slice(offset)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  for (const door of DOORS) {
    describe(door.name, () => {
      let caller: Caller;
      let up: PolicyUpstream;
      /** A tool or resource as this door's client names it (compose prefixes the member's). */
      const tool = (name: string) => (door.member ? `${door.member}__${name}` : name);
      const uri = (u: string) => (door.member ? `${door.member}+${u}` : u);
      const textOf = (o: Outcome) => (o.result?.content ?? o.result?.contents ?? []).map((c) => c.text ?? '').join('');
      const show = (o: Outcome) => JSON.stringify(o);

      before(async () => {
        up = upstreams.get(door.server)!;
        caller = await within(15_000, `connecting (${door.name})`, door.connect(`${gw.url}/mcp/${door.server}`, headers));
      }, HOOK);
      after(async () => {
        await caller?.close().catch(() => {});
      }, HOOK);

      it('rate limit: the call past the limit is refused with MCPGW_ERR_RATE_LIMITED, and never reaches the upstream', async () => {
        for (let n = 1; n <= 2; n++) {
          const ok = await caller.call(tool('limited'));
          assert.equal(ok.error, undefined, `call ${n}: ${show(ok)}`);
        }
        const refused = await caller.call(tool('limited'));
        assert.equal(refused.error?.code, ERRORS.MCPGW_ERR_RATE_LIMITED.rpc, show(refused));
        assert.match(refused.error.message, /limit/i);
        assert.equal(up.done('tools/call limited'), 2);
      });

      it('cache hit: two reads, one upstream read', async () => {
        const first = await caller.read(uri('res://hit'));
        const second = await caller.read(uri('res://hit'));
        assert.equal(first.error, undefined, show(first));
        assert.equal(second.error, undefined, show(second));
        assert.equal(textOf(second), textOf(first));
        assert.equal(up.done('resources/read res://hit'), 1);
      });

      it('cache invalidated by a tools/call through this door: the next read goes upstream', async () => {
        await caller.read(uri('res://doc'));
        const cached = await caller.read(uri('res://doc'));
        assert.match(textOf(cached), /rev 1$/, show(cached));
        assert.equal(up.done('resources/read res://doc'), 1, 'the second read came from the cache');
        const noted = await caller.call(tool('note'));
        assert.equal(noted.error, undefined, show(noted));
        const fresh = await caller.read(uri('res://doc'));
        assert.match(textOf(fresh), /rev 2$/, show(fresh));
        assert.equal(up.done('resources/read res://doc'), 2);
      });

      it('idle limit: a silent call gets MCPGW_ERR_UPSTREAM_TIMEOUT, and the upstream call is cancelled', async () => {
        const cancelledBefore = up.cancelled('silent');
        const cut = await caller.call(tool('silent'), { ms: 20_000 });
        assert.equal(cut.error?.code, ERRORS.MCPGW_ERR_UPSTREAM_TIMEOUT.rpc, show(cut));
        assert.match(cut.error.message, new RegExp(`no progress for ${IDLE_MS} ms`));
        await until(() => up.cancelled('silent') > cancelledBefore, 'the upstream to see the call cancelled');
      });

      it('max limit: a call that keeps reporting progress is ended at the maximum, and cancelled upstream', async () => {
        const cancelledBefore = up.cancelled('ticking');
        const progress: number[] = [];
        const cut = await caller.call(tool('ticking'), { ms: 20_000 }, (p) => progress.push(p));
        assert.equal(cut.error?.code, ERRORS.MCPGW_ERR_UPSTREAM_TIMEOUT.rpc, show(cut));
        assert.match(cut.error.message, new RegExp(`${MAX_MS} ms maximum`));
        assert.ok(progress.length > 0, 'progress reached the client, and did not save the call');
        await until(() => up.cancelled('ticking') > cancelledBefore, 'the upstream to see the call cancelled');
      });

      it('retry: a safe call the upstream answers 503 once is tried again, and the client gets the answer', async () => {
        const before = await settled();
        up.fail('resources/read res://retry', 1, 503);
        const read = await caller.read(uri('res://retry'));
        assert.equal(read.error, undefined, show(read));
        assert.match(textOf(read), /res:\/\/retry rev 1$/);
        assert.equal(up.attempts('resources/read res://retry'), 2, 'the upstream got the read twice');
        assert.equal(up.done('resources/read res://retry'), 1);
        // The gateway tried again, not the client: it sent one request and got one answer.
        await expectMoved(before, {
          [seriesKey('mcp_requests_total', { method: 'resources/read', status: 'success' })]: 1,
          [seriesKey('mcp_requests_total', { method: 'resources/read', status: 'error' })]: 0,
        });
      });

      it('policy filtering: a tool the caller may not use is not listed, and calling it is refused as unknown', async () => {
        const names = await caller.tools();
        assert.ok(names.includes(tool('lookup')), names.join(', '));
        assert.ok(!names.includes(tool('secret')), names.join(', '));
        const hidden = await caller.call(tool('secret'));
        const unknown = await caller.call(tool('nope'));
        assert.equal(hidden.error?.code, unknown.error?.code, `${show(hidden)} vs ${show(unknown)}`);
        assert.equal(hidden.error?.code, -32602, show(hidden));
        assert.match(hidden.error.message, /secret.*not found|not found.*secret/i);
        assert.equal(up.done('tools/call secret'), 0, 'the hidden tool never ran');
      });

      /** A success, a tool error (isError) and an unknown tool (a JSON-RPC error), all in HTTP 200s: the series move by `want`. */
      async function threeCallsMove(want: Record<string, number>): Promise<void> {
        const before = await settled();
        const ok = await caller.call(tool('lookup'));
        assert.equal(ok.error, undefined, show(ok));
        assert.equal(ok.result?.isError, undefined, show(ok));
        const failed = await caller.call(tool('fails'));
        assert.equal(failed.result?.isError, true, show(failed));
        const unknown = await caller.call(tool('nope'));
        assert.equal(unknown.error?.code, -32602, show(unknown));
        await expectMoved(before, want);
      }

      it('mcp_requests_total: status="success" for the success, status="error" for a tool error and an unknown tool', () =>
        threeCallsMove({
          [seriesKey('mcp_requests_total', { method: 'tools/call', status: 'success' })]: 1,
          [seriesKey('mcp_requests_total', { method: 'tools/call', status: 'error' })]: 2,
        }));

      it('mcp_errors_total: error_type="tool_error" and "rpc_invalid_params"', () =>
        threeCallsMove({
          [seriesKey('mcp_errors_total', { error_type: 'tool_error', method: 'tools/call' })]: 1,
          [seriesKey('mcp_errors_total', { error_type: 'rpc_invalid_params', method: 'tools/call' })]: 1,
        }));

      it('audit outcome: ok, error (tool_error) and denied, by what the client got', async () => {
        const offset = auditSince(0).length;
        const ok = await caller.call(tool('lookup'));
        assert.equal(ok.error, undefined, show(ok));
        const failed = await caller.call(tool('fails'));
        assert.equal(failed.result?.isError, true, show(failed));
        await caller.call(tool('secret'));
        const lineOf = (name: string) => auditSince(offset).find((l) => l.method === 'tools/call' && l.name === tool(name));
        await until(() => ['lookup', 'fails', 'secret'].every((n) => lineOf(n)), 'the audit lines').catch(() => {});
        const outcomes = Object.fromEntries(['lookup', 'fails', 'secret'].map((n) => [n, { outcome: lineOf(n)?.outcome, error: lineOf(n)?.error, server: lineOf(n)?.server }]));
        assert.deepEqual(outcomes, {
          lookup: { outcome: 'ok', error: null, server: door.server },
          fails: { outcome: 'error', error: 'tool_error', server: door.server },
          secret: { outcome: 'denied', error: outcomes.secret?.error, server: door.server },
        });
      });
    });
  }
});
