import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { SessionSealer } from '../../src/session/token.ts';
import { startGateway, TEST_SECRET } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { INIT, openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { DEMO_SERVER, startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/** What must never leave the configuration: URL userinfo and query, stdio arguments. */
const SECRETS = ['SECRET123', 'SECRET124', 'SECRET456', 'SECRET789', 'user:pw', ':pw@', 'SECRETTOK', 'CCSECRET'];

function assertClean(what: string, text: string): void {
  for (const s of SECRETS) assert.ok(!text.includes(s), `${s} leaked into ${what}: ${text}`);
}

const echo = (id: number, text: string) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text } } });

describe('secrets in upstream URLs and arguments stay out of metrics, logs, errors and session ids', () => {
  let up: HttpUpstreamProcess;
  let gw: Gateway;
  let name: string;
  let twin: string;
  let secretUrl: string;
  let tokenEndpoint: string;
  const sealer = new SessionSealer(TEST_SECRET);
  const raw: string[] = [];
  const logs = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw.push(chunk.toString('utf8'));
      done();
    },
  });

  before(async () => {
    up = await startDemoUpstream('secrets');
    secretUrl = `http://user:pw@127.0.0.1:${up.port}/mcp?api_key=SECRET123`;
    // Two replicas whose URLs differ only in the query: distinct replicas, one public URL.
    name = `http://127.0.0.1:${up.port}/mcp [0]`;
    twin = `http://127.0.0.1:${up.port}/mcp [1]`;
    tokenEndpoint = `http://127.0.0.1:${await freePort()}/token`;
    gw = await startGateway(
      {
        servers: {
          creds: { upstreams: [{ url: up.url, credentials: { clientCredentials: { tokenUrl: `${tokenEndpoint}?client_assertion=SECRETTOK`, clientId: 'gw', clientSecret: 'CCSECRET' } } }] },
          api: { maxFails: 1, failTimeout: '1m', upstreams: [{ url: secretUrl }, { url: `http://127.0.0.1:${up.port}/mcp?api_key=SECRET124` }] },
          tools: { upstreams: [{ command: process.execPath, args: [DEMO_SERVER, '--token=SECRET456', '--api-key', 'SECRET789'] }] },
        },
      },
      { logger: createLogger('debug', logs) },
    );
  });
  after(async () => {
    await gw?.close();
    await up?.stop();
  });

  it('sessions route through both replicas; the sealed placement names the replica, not its URL', async () => {
    // The first session's open GET stream loads its replica: the second goes to the other one.
    const first = await openSession(`${gw.url}/mcp/api`);
    const stream = new AbortController();
    const get = await fetch(`${gw.url}/mcp/api`, { headers: { ...sessionHeaders(first), accept: 'text/event-stream' }, signal: stream.signal });
    assert.equal(get.status, 200);
    const second = await openSession(`${gw.url}/mcp/api`);
    stream.abort();
    const placed = [first, second].map((sid) => sealer.open(sid)!.upstream);
    assert.deepEqual(placed.sort(), [name, twin]);
    for (const [i, sid] of [first, second].entries()) {
      const res = await post(`${gw.url}/mcp/api`, echo(2, `via ${i}`), sessionHeaders(sid));
      assert.equal(res.status, 200);
      assert.match(JSON.stringify(rpcOf(res)), new RegExp(`via ${i}`));
    }

    const sid = await openSession(`${gw.url}/mcp/tools`);
    assert.equal(sealer.open(sid)!.upstream, 'stdio:0');
    const res = await post(`${gw.url}/mcp/tools`, echo(2, 'from stdio'), sessionHeaders(sid));
    assert.match(JSON.stringify(rpcOf(res)), /from stdio/);
  });

  it('a session id sealed when replicas were keyed by URL still routes', async () => {
    const claims = sealer.open(await openSession(`${gw.url}/mcp/api`))!;
    const old = sealer.seal({ ...claims, upstream: claims.upstream === name ? secretUrl : `http://127.0.0.1:${up.port}/mcp?api_key=SECRET124` });
    const res = await post(`${gw.url}/mcp/api`, echo(2, 'old id'), sessionHeaders(old));
    assert.equal(res.status, 200);
    assert.match(JSON.stringify(rpcOf(res)), /old id/);
  });

  it('metrics label each replica by its public URL, one series per replica', async () => {
    const text = await (await fetch(`${gw.metricsUrl}/metrics`)).text();
    assertClean('/metrics', text);
    assert.ok(text.includes(`mcp_upstream_breaker_state{server="api",replica="${name}"} 0`), text);
    assert.ok(text.includes(`mcp_upstream_breaker_state{server="api",replica="${twin}"} 0`), text);
    assert.ok(text.includes('mcp_upstream_breaker_state{server="tools",replica="stdio:0"} 0'), text);
  });

  it('a token endpoint that fails is named to the caller without its query', async () => {
    const res = await post(`${gw.url}/mcp/creds`, INIT);
    assert.equal(res.status, 502);
    assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_UPSTREAM_CREDENTIALS');
    assert.ok(rpcOf(res).error?.message.includes(`token endpoint ${tokenEndpoint} unreachable`), res.text);
    assertClean('an error answer', res.text);
  });

  it('the upstream dies: callers, the ejection log lines and the ejection counters see names only', async () => {
    const sid = await openSession(`${gw.url}/mcp/api`);
    await up.child.kill('SIGKILL');
    const lost = await post(`${gw.url}/mcp/api`, echo(2, 'lost'), sessionHeaders(sid));
    assert.ok(lost.status >= 400);
    assertClean('an error answer', lost.text);
    const fresh = await post(`${gw.url}/mcp/api`, INIT);
    assert.ok(fresh.status >= 500);
    assertClean('an error answer', fresh.text);
    const ready = await fetch(`${gw.url}/readyz?verbose`);
    assert.equal(ready.status, 200);
    const view = await ready.text();
    assert.match(view, /"api":\{"state":"no_healthy_upstream"/);
    assertClean('/readyz?verbose', view);

    await new Promise((r) => setTimeout(r, 50));
    const lines = raw.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    assertClean('the log', raw.join(''));
    const ejected = lines.filter((l) => l.msg === 'upstream replica ejected').map((l) => l.replica);
    assert.deepEqual(ejected.sort(), [name, twin]);
    const text = await (await fetch(`${gw.metricsUrl}/metrics`)).text();
    assert.ok(text.includes(`mcp_upstream_ejections_total{server="api",replica="${name}"} 1`), text);
    assertClean('/metrics', text);
  });
});
