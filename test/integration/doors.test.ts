import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { textOf } from '../helpers/client.ts';
import { startEraServer, statelessPost, type EraServer } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { initializeLegacy, LegacyStream, postMessage } from '../helpers/legacy.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { metricValue, until } from '../helpers/streams.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/**
 * The pipeline's stages hold on every front door (src/pipeline/): a table of doors × policies.
 * Each door reaches its own servers, so no cell spends another's limit.
 */

type Answer = { id?: unknown; result?: unknown; error?: { code: number; message: string; data?: { code?: string } } };

interface Caller {
  /** One JSON-RPC request through the door; its answer however the door delivers it. */
  rpc(id: number, method: string, params: Record<string, unknown>): Promise<Answer>;
  close(): void;
}

const callTool = (caller: Caller, id: number, name: string, args: Record<string, unknown>) => caller.rpc(id, 'tools/call', { name, arguments: args });

interface Door {
  readonly name: string;
  /** The era of upstream this door is tested against. */
  readonly upstream: 'demo' | 'stateless';
  open(gw: Gateway, server: string): Promise<Caller>;
}

const toolCall = (id: number, name: string, args: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
const rpc = (id: number, method: string, params: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method, params });

const DOORS: readonly Door[] = [
  {
    name: 'session era (2025-11-25, raw HTTP)',
    upstream: 'demo',
    async open(gw, server) {
      const url = `${gw.url}/mcp/${server}`;
      const sid = await openSession(url);
      return { rpc: async (id, method, params) => rpcOf(await post(url, rpc(id, method, params), sessionHeaders(sid))) as Answer, close: () => {} };
    },
  },
  {
    name: '2026-07-28, translated for a session-era upstream',
    upstream: 'demo',
    async open(gw, server) {
      const url = `${gw.url}/mcp/${server}`;
      return { rpc: async (id, method, params) => rpcOf(await statelessPost(url, method, params, { id })) as Answer, close: () => {} };
    },
  },
  {
    name: '2026-07-28, forwarded to a 2026-07-28 upstream',
    upstream: 'stateless',
    async open(gw, server) {
      const url = `${gw.url}/mcp/${server}`;
      return { rpc: async (id, method, params) => rpcOf(await statelessPost(url, method, params, { id })) as Answer, close: () => {} };
    },
  },
  {
    name: 'session era, for a 2026-07-28-only upstream (the gateway holds the session)',
    upstream: 'stateless',
    async open(gw, server) {
      const url = `${gw.url}/mcp/${server}`;
      const sid = await openSession(url);
      return { rpc: async (id, method, params) => rpcOf(await post(url, rpc(id, method, params), sessionHeaders(sid))) as Answer, close: () => {} };
    },
  },
  {
    name: '2024-11-05 (HTTP+SSE)',
    upstream: 'demo',
    async open(gw, server) {
      const sseUrl = `${gw.url}/mcp/${server}/sse`;
      const stream = await LegacyStream.open(sseUrl);
      await stream.until((events) => events.some((e) => e.event === 'endpoint'));
      const endpoint = stream.endpoint(sseUrl);
      await initializeLegacy(stream, endpoint);
      return {
        // A refusal before the upstream is the POST's answer; anything else comes on the session stream.
        async rpc(id, method, params) {
          const res = await postMessage(endpoint, rpc(id, method, params));
          if (res.status !== 202) return JSON.parse(res.text) as Answer;
          // Well under the upstream's GET stream's first event (it sends its headers only then,
          // through the flaky proxy): the session stream must not wait for that GET to open.
          const events = await stream.until((all) => all.some((e) => e.message?.id === id), 8_000);
          return events.find((e) => e.message?.id === id)!.message as Answer;
        },
        close: () => stream.drop(),
      };
    },
  },
];

/** A quick tool of each upstream, and one silent for 6 s (no progress token: no progress). */
const QUICK = { demo: { name: 'echo', args: { text: 'hi' } }, stateless: { name: 'test_simple_text', args: {} } } as const;
const SILENT = { demo: { name: 'slow_count', args: { count: 60, delayMs: 100 } }, stateless: { name: 'slow_count', args: { count: 300 } } } as const;

/** A read each upstream serves, and a tool of each that the gateway does not know to be read-only. */
const READ = { demo: 'demo://readme', stateless: 'test://static-text' } as const;
const WRITE = { demo: { name: 'announce', args: { text: 'x' } }, stateless: { name: 'test_simple_text', args: {} } } as const;

/** A proxy in front of an upstream that answers HTTP 502 to the next `fails` resources/read POSTs. */
interface FlakyProxy {
  readonly url: string;
  fails: number;
  failed: number;
  close(): Promise<void>;
}

async function startFlakyProxy(target: string): Promise<FlakyProxy> {
  const to = new URL(target);
  const proxy = { url: '', fails: 0, failed: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && proxy.fails > 0 && body.includes('"resources/read"')) {
        proxy.fails--;
        proxy.failed++;
        return void res.writeHead(502, { 'content-type': 'text/plain' }).end('bad gateway');
      }
      const up = httpRequest(new URL(req.url!, to.origin), { method: req.method, headers: { ...req.headers, host: to.host } }, (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      });
      up.on('error', () => res.destroy());
      res.once('close', () => up.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${to.pathname}`;
  proxy.close = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return proxy;
}

describe('every door: rate limits, time limits, cache, retries', () => {
  let demo: HttpUpstreamProcess;
  let era: EraServer;
  let flaky: { demo: FlakyProxy; stateless: FlakyProxy };
  let gw: Gateway;
  const url = (door: Door) => (door.upstream === 'demo' ? demo.url : era.url);

  before(async () => {
    [demo, era] = await Promise.all([startDemoUpstream('doors'), startEraServer('stateless')]);
    flaky = { demo: await startFlakyProxy(demo.url), stateless: await startFlakyProxy(era.url) };
    const servers: Record<string, unknown> = {};
    DOORS.forEach((door, i) => {
      servers[`limited${i}`] = { upstreams: [{ url: url(door) }], rateLimit: { tools: { [QUICK[door.upstream].name]: { requests: 3, per: '1m' } } } };
      servers[`timed${i}`] = { upstreams: [{ url: url(door) }], timeout: { idle: '1s', max: '20s' } };
      servers[`maxed${i}`] = { upstreams: [{ url: url(door) }], timeout: { idle: '20s', max: '1s' } };
      servers[`cached${i}`] = { upstreams: [{ url: url(door) }], cache: { ttl: '1m' } };
      // maxFails 0: the failures must not eject the only replica.
      servers[`flaky${i}`] = { upstreams: [{ url: flaky[door.upstream].url }], maxFails: 0, retry: { backoff: '10ms' } };
    });
    // compose: a member's own rate limit holds for calls through a virtual server over it.
    servers.member = { upstreams: [{ url: demo.url }], rateLimit: { tools: { echo: { requests: 3, per: '1m' } } } };
    servers.virtual = { compose: ['member'] };
    gw = await startGateway({ servers });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([demo?.stop(), era?.stop(), flaky?.demo.close(), flaky?.stateless.close()]);
  });

  it('compose: a member call is charged to the member: the 4th echo through the virtual server is refused', async () => {
    const caller = await DOORS[0]!.open(gw, 'virtual');
    for (let n = 1; n <= 3; n++) {
      const answer = await callTool(caller, n, 'member__echo', { text: 'hi' });
      assert.equal(answer.error, undefined, `call ${n}: ${JSON.stringify(answer.error)}`);
    }
    const refused = await callTool(caller, 4, 'member__echo', { text: 'hi' });
    assert.equal(refused.error?.data?.code, 'MCPGW_ERR_RATE_LIMITED', JSON.stringify(refused));
    assert.match(refused.error!.message, /server "member"/);
  });

  DOORS.forEach((door, i) => {
    describe(door.name, () => {
      it('a tool limited to 3 a minute: the 4th call is refused with MCPGW_ERR_RATE_LIMITED', async () => {
        const caller = await door.open(gw, `limited${i}`);
        try {
          const { name, args } = QUICK[door.upstream];
          for (let n = 1; n <= 3; n++) {
            const answer = await callTool(caller, n, name, args);
            assert.equal(answer.error, undefined, `call ${n}: ${JSON.stringify(answer.error)}`);
          }
          const refused = await callTool(caller, 4, name, args);
          assert.equal(refused.id, 4);
          assert.equal(refused.error?.data?.code, 'MCPGW_ERR_RATE_LIMITED', JSON.stringify(refused));
        } finally {
          caller.close();
        }
      });

      it('a tool silent past timeout.idle gets MCPGW_ERR_UPSTREAM_TIMEOUT within ~idle + 1 s, and is cancelled upstream', async () => {
        const caller = await door.open(gw, `timed${i}`);
        try {
          const cancelledBefore = await cancelled(door, i);
          const { name, args } = SILENT[door.upstream];
          const started = Date.now();
          const answer = await callTool(caller, 7, name, args);
          const elapsed = Date.now() - started;
          assert.equal(answer.id, 7);
          assert.equal(answer.error?.data?.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT', JSON.stringify(answer));
          assert.match(answer.error!.message, new RegExp(`server "timed${i}": no progress for 1000 ms`));
          assert.ok(elapsed < 2_500, `answered after ${elapsed} ms, not at the 1 s idle limit`);
          await until(async () => (await cancelled(door, i)) > cancelledBefore, 'the upstream to stop the call');
        } finally {
          caller.close();
        }
      });

      it('a tool busy past timeout.max gets MCPGW_ERR_UPSTREAM_TIMEOUT at the maximum', async () => {
        const caller = await door.open(gw, `maxed${i}`);
        try {
          const { name, args } = SILENT[door.upstream];
          const answer = await callTool(caller, 8, name, args);
          assert.equal(answer.id, 8);
          assert.equal(answer.error?.data?.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT', JSON.stringify(answer));
          assert.match(answer.error!.message, new RegExp(`server "maxed${i}": over the 1000 ms maximum`));
        } finally {
          caller.close();
        }
      });

      it('a read asked twice is answered from the cache the second time', async () => {
        const caller = await door.open(gw, `cached${i}`);
        try {
          const hits = await cacheCount('hits');
          const first = await caller.rpc(11, 'resources/read', { uri: READ[door.upstream] });
          assert.equal(first.error, undefined, JSON.stringify(first));
          const second = await caller.rpc(12, 'resources/read', { uri: READ[door.upstream] });
          assert.equal(second.id, 12);
          assert.deepEqual((second.result as { contents: unknown }).contents, (first.result as { contents: unknown }).contents);
          assert.equal(await cacheCount('hits'), hits + 1, 'the second read was a cache hit');
        } finally {
          caller.close();
        }
      });

      it('a tools/call through this door empties the cache', async () => {
        const caller = await door.open(gw, `cached${i}`);
        try {
          await caller.rpc(13, 'resources/read', { uri: READ[door.upstream] });
          const hits = await cacheCount('hits');
          await caller.rpc(14, 'resources/read', { uri: READ[door.upstream] });
          assert.equal(await cacheCount('hits'), hits + 1, 'cached before the call');
          const { name, args } = WRITE[door.upstream];
          const called = await callTool(caller, 15, name, args);
          assert.equal(called.error, undefined, JSON.stringify(called));
          const misses = await cacheCount('misses');
          await until(async () => {
            await caller.rpc(16, 'resources/read', { uri: READ[door.upstream] });
            return (await cacheCount('misses')) > misses;
          }, 'a read after the call to miss the cache');
        } finally {
          caller.close();
        }
      });

      it('a safe read that fails once with HTTP 502 is retried and answered', async () => {
        const caller = await door.open(gw, `flaky${i}`);
        try {
          const proxy = flaky[door.upstream];
          const failed = proxy.failed;
          proxy.fails = 1;
          const answer = await caller.rpc(21, 'resources/read', { uri: READ[door.upstream] });
          assert.equal(answer.error, undefined, JSON.stringify(answer));
          assert.equal(proxy.failed, failed + 1, 'the first attempt failed');
        } finally {
          caller.close();
        }
      });
    });
  });

  function cacheCount(what: 'hits' | 'misses'): Promise<number> {
    return metricValue(gw, `mcp_cache_${what}_total`, { method: 'resources/read' });
  }

  /** The upstream's own count of calls it stopped because they were cancelled. */
  async function cancelled(door: Door, i: number): Promise<number> {
    const server = `${gw.url}/mcp/timed${i}`;
    const res = door.upstream === 'demo' ? await post(server, toolCall(99, 'stats', {}), sessionHeaders(await openSession(server))) : await statelessPost(server, 'tools/call', { name: 'stats', arguments: {} }, { id: 99 });
    return (JSON.parse(textOf((rpcOf(res) as Answer).result)) as { cancelled: number }).cancelled;
  }
});
