import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Client } from 'undici';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { demoServerPath } from '../../src/config/load.ts';
import { INIT, JSON_AND_SSE, openSession } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/** One request as a keep-alive client saw it: an answer, or an error before any answer. */
interface Attempt {
  readonly id: string;
  readonly replica: string;
  readonly sentAt: number;
  readonly status?: number;
  readonly connection?: string | undefined;
  readonly retryAfter?: string | undefined;
  readonly text?: string;
  /** undici's or the socket's code when no answer came. */
  readonly error?: string;
}

/** Keep-alive HTTP/1.1 clients, one connection per replica (undici Client), as a load balancer's or an SDK's would be. */
class Caller {
  readonly #clients = new Map<string, Client>();

  async send(replica: string, id: string, path: string, method: 'GET' | 'POST', headers: Record<string, string>, body?: string): Promise<Attempt> {
    let client = this.#clients.get(replica);
    if (!client) {
      client = new Client(replica, { pipelining: 1, keepAliveTimeout: 60_000 });
      this.#clients.set(replica, client);
    }
    const sentAt = performance.now();
    try {
      const res = await client.request({ path, method, headers: { ...headers, 'x-request-id': id }, body, headersTimeout: 15_000, bodyTimeout: 15_000 });
      const text = await res.body.text();
      const h = (name: string) => (Array.isArray(res.headers[name]) ? res.headers[name].join(',') : res.headers[name]);
      return { id, replica, sentAt, status: res.statusCode, connection: h('connection'), retryAfter: h('retry-after'), text };
    } catch (err) {
      const e = err as { code?: string; cause?: { code?: string } };
      return { id, replica, sentAt, error: e.cause?.code ?? e.code ?? String(err) };
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.#clients.values()].map((c) => c.destroy()));
  }
}

const echo = (text: string) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text } } });
const sessionHeaders = (sid: string) => ({ 'content-type': 'application/json', accept: JSON_AND_SSE, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });
const FASTIFY_503 = '"error":"Service Unavailable"';

/** Request ids the gateway process handled (its debug `request` lines): a request it never logged was never accepted. */
function handledIds(gw: GatewayProcess): Set<string> {
  const ids = new Set<string>();
  for (const l of gw.child.output) {
    try {
      const v = JSON.parse(l) as { msg?: string; reqId?: string };
      if (v.msg === 'request' && v.reqId) ids.add(v.reqId);
    } catch {
      // not a log line
    }
  }
  return ids;
}

/** When the process said it began to drain (performance.now() of this process), once it has. */
function drainSeen(gw: GatewayProcess): () => number | undefined {
  let at: number | undefined;
  const see = (l: string) => {
    if (at === undefined && l.includes('"msg":"shutting down"')) at = performance.now();
  };
  gw.child.lines.on('line', see);
  return () => at;
}

/** An answer is a JSON-RPC result, or the draining replica's JSON-RPC refusal with Retry-After — never Fastify's own body. */
function assertAnswered(a: Attempt): 'ok' | 'refused' {
  assert.ok(!a.text?.includes(FASTIFY_503), `${a.id}: Fastify's default 503 body: ${a.text}`);
  if (a.status === 200) {
    assert.ok(a.text?.includes(`"text":"${a.id}"`), `${a.id}: ${a.text}`);
    return 'ok';
  }
  assert.equal(a.status, 503, `${a.id}: ${a.status} ${a.text}`);
  const body = JSON.parse(a.text!) as { jsonrpc?: string; error?: { data?: { code?: string } } };
  assert.equal(body.jsonrpc, '2.0', `${a.id}: ${a.text}`);
  assert.equal(body.error?.data?.code, 'MCPGW_ERR_SHUTTING_DOWN', `${a.id}: ${a.text}`);
  assert.ok(a.retryAfter, `${a.id}: a refusal carries Retry-After`);
  return 'refused';
}

describe('drain on SIGTERM: keep-alive clients move without an error', () => {
  let upstream: HttpUpstreamProcess;
  before(async () => {
    upstream = await startDemoUpstream('drain');
  });
  after(async () => {
    await upstream?.stop();
  });

  it('requests on open connections are answered, each closing its connection; nothing accepted is cut', async () => {
    const gw = await spawnGateway({
      log: { level: 'debug' },
      shutdown: { grace: '10s' },
      servers: { api: { upstreams: [{ url: upstream.url }] }, local: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] } },
    });
    // One connection per client: six steady ones, one for the long call, nine opened before the
    // drain and used again during it.
    const callers = Array.from({ length: 16 }, () => new Caller());
    const [slowCaller, late, lateReady, lateStdio] = callers.slice(6, 10) as [Caller, Caller, Caller, Caller];
    const idle = callers.slice(10);
    try {
      const draining = drainSeen(gw);
      const sids = await Promise.all(Array.from({ length: 6 }, () => openSession(`${gw.url}/mcp/api`)));
      // A call that runs through the drain, its SSE answer begun before it: the drain lasts past the linger.
      const slow = slowCaller.send(gw.url, 'slow', '/mcp/api', 'POST', sessionHeaders(sids[0]!), JSON.stringify({
        jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'slow_count', arguments: { count: 15, delayMs: 100 }, _meta: { progressToken: 'p' } },
      }));
      // Connections opened before the drain, idle when it begins, used again once it began.
      for (const [i, c] of [late, lateReady, lateStdio, ...idle].entries()) assert.equal((await c.send(gw.url, `warm-${i}`, '/mcp/api', 'POST', sessionHeaders(sids[1]!), echo(`warm-${i}`))).status, 200);

      const attempts: Attempt[] = [];
      let stop = false;
      const loops = sids.map(async (sid, k) => {
        for (let n = 0; !stop; n++) {
          const a = await callers[k]!.send(gw.url, `c${k}-${n}`, '/mcp/api', 'POST', sessionHeaders(sid), echo(`c${k}-${n}`));
          attempts.push(a);
          // The listener closed: this client would go to another replica now.
          if (a.error === 'ECONNREFUSED') return;
        }
      });
      await sleep(400);
      gw.child.proc.kill('SIGTERM');
      while (draining() === undefined) await sleep(5);
      const [get, ready, stdio, ...reused] = await Promise.all([
        late.send(gw.url, 'get-during-drain', '/mcp/api', 'GET', { ...sessionHeaders(sids[1]!), accept: 'text/event-stream' }),
        lateReady.send(gw.url, 'ready-during-drain', '/readyz', 'GET', {}),
        lateStdio.send(gw.url, 'stdio-during-drain', '/mcp/local', 'POST', { 'content-type': 'application/json', accept: JSON_AND_SSE }, JSON.stringify(INIT)),
        ...idle.map((c, i) => c.send(gw.url, `reused-${i}`, '/mcp/api', 'POST', sessionHeaders(sids[2]!), echo(`reused-${i}`))),
      ]);
      const { code } = await gw.child.exited();
      stop = true;
      await Promise.all(loops);

      assert.equal(code, 0, gw.child.output.slice(-20).join('\n'));
      const slowDone = await slow;
      assert.equal(slowDone.status, 200, slowDone.error);
      assert.match(slowDone.text!, /counted to 15/, 'the call in flight finished during the drain');
      // A new stream, and a new session that would live in this process only (a stdio child), are
      // refused with the error table's answer; readiness says why; each closes its connection.
      assert.equal(assertAnswered(get), 'refused');
      assert.equal(get.connection, 'close');
      assert.equal(assertAnswered(stdio), 'refused');
      assert.equal(stdio.connection, 'close');
      assert.equal(ready.status, 503, ready.text);
      assert.deepEqual(JSON.parse(ready.text!), { status: 'unavailable', reasons: ['shutting down'] });
      assert.equal(ready.connection, 'close');
      // An idle keep-alive connection used during the drain is served, and closed after its answer.
      for (const r of reused) {
        assert.equal(r.status, 200, `${r.id}: ${r.error ?? r.text}`);
        assert.equal(assertAnswered(r), 'ok');
        assert.equal(r.connection, 'close', r.id);
      }

      const handled = handledIds(gw);
      const drainAt = draining()!;
      for (const a of attempts) {
        if (a.error !== undefined) {
          // No answer: only a request the gateway never took (a refused connection, or one sent
          // as an idle connection was closed) — never one it accepted.
          assert.ok(!handled.has(a.id), `${a.id}: accepted, then cut (${a.error})`);
          continue;
        }
        assertAnswered(a);
        if (a.sentAt > drainAt) assert.equal(a.connection, 'close', `${a.id}: an answer during the drain closes its connection`);
      }
      // The steady clients' last answers closed their connections; their next connections were refused.
      let moved = 0;
      for (let k = 0; k < sids.length; k++) {
        const mine = attempts.filter((a) => a.id.startsWith(`c${k}-`));
        assert.equal(mine.at(-1)?.error, 'ECONNREFUSED', `c${k}: ${JSON.stringify(mine.at(-1))}`);
        if (mine.at(-2)?.connection === 'close') moved++;
      }
      // (A client stalled past the linger finds its idle connection closed instead: allowed, not expected.)
      assert.ok(moved >= sids.length - 1, `${moved} of ${sids.length} steady clients were moved by an answer`);
      assert.ok(attempts.filter((a) => a.status === 200).length > 20, 'steady load before the drain');
    } finally {
      await Promise.all(callers.map((c) => c.close()));
      await gw.stop();
    }
  });
});

describe('rolling restart of two replicas sharing Redis, under steady keep-alive load', () => {
  let redis: RedisServer;
  let upstream: HttpUpstreamProcess;
  const gateways: GatewayProcess[] = [];
  before(async () => {
    [redis, upstream] = await Promise.all([startRedis(), startDemoUpstream('rolling')]);
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()));
    await Promise.all([upstream?.stop(), redis?.stop()]);
  });

  it('every request is answered while each replica in turn is replaced', async () => {
    const doc = { log: { level: 'debug' }, shutdown: { grace: '10s' }, redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } };
    const spawn = async () => {
      const g = await spawnGateway(doc);
      gateways.push(g);
      return g;
    };
    const [a, b] = await Promise.all([spawn(), spawn()]);
    // What a load balancer routes new connections to; a replica leaves it a little after it was
    // told to stop (as Kubernetes endpoints do), so some clients still try it and are refused.
    let live = [a.url, b.url];
    const callers = Array.from({ length: 6 }, () => new Caller());
    const sids = await Promise.all(Array.from({ length: 6 }, (_, k) => openSession(`${live[k % 2]}/mcp/api`)));
    const attempts: Attempt[] = [];
    const answered: string[] = [];
    let stop = false;
    const loops = sids.map(async (sid, k) => {
      let replica = live[k % live.length]!;
      for (let n = 0; !stop; n++) {
        // One logical request, sent again (under a new attempt id) until it is answered.
        for (let attempt = 0; ; attempt++) {
          assert.ok(attempt < 20, `c${k}-${n}: no replica answered`);
          const a = await callers[k]!.send(replica, `c${k}-${n}-${attempt}`, '/mcp/api', 'POST', sessionHeaders(sid), echo(`c${k}-${n}-${attempt}`));
          attempts.push(a);
          if (a.status === 200) {
            answered.push(a.id);
            // Connection: close: the next request opens a connection, and the balancer picks its replica.
            if (a.connection === 'close') replica = live[(k + n) % live.length]!;
            break;
          }
          // Refused (connection refused, or the drain's 503): another replica, at once.
          replica = live.find((r) => r !== replica) ?? live[0]!;
          if (a.error === undefined) continue;
          await sleep(5);
        }
      }
    });

    const replace = async (old: GatewayProcess) => {
      await sleep(500);
      const fresh = await spawn();
      live = [...live, fresh.url];
      old.child.proc.kill('SIGTERM');
      await sleep(200);
      live = live.filter((u) => u !== old.url);
      const { code } = await old.child.exited();
      assert.equal(code, 0, old.child.output.slice(-20).join('\n'));
    };
    try {
      await replace(a);
      await replace(b);
      await sleep(500);
    } finally {
      stop = true;
      await Promise.all(loops);
      await Promise.all(callers.map((c) => c.close()));
    }

    const handled = new Set(gateways.flatMap((g) => [...handledIds(g)]));
    for (const a of attempts) {
      if (a.error !== undefined) assert.ok(!handled.has(a.id), `${a.id}: accepted, then cut (${a.error})`);
      else assertAnswered(a);
    }
    assert.ok(answered.length > 50, `steady load (${answered.length} answered)`);
    // Both old replicas answered while draining, closing the connections they answered on.
    for (const old of [a, b]) {
      assert.ok(attempts.some((x) => x.replica === old.url && x.status === 200 && x.connection === 'close'), `${old.url} answered during its drain`);
    }
  });
});
