import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { textOf } from '../helpers/client.ts';
import { startEraServer, statelessPost, type EraServer } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { initializeLegacy, LegacyStream, postMessage } from '../helpers/legacy.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { until } from '../helpers/streams.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

/**
 * The pipeline's stages hold on every front door (src/pipeline/): a table of doors × policies.
 * Each door reaches its own servers, so no cell spends another's limit.
 */

type Answer = { id?: unknown; result?: unknown; error?: { code: number; message: string; data?: { code?: string } } };

interface Caller {
  call(id: number, name: string, args: Record<string, unknown>): Promise<Answer>;
  close(): void;
}

interface Door {
  readonly name: string;
  /** The era of upstream this door is tested against. */
  readonly upstream: 'demo' | 'stateless';
  open(gw: Gateway, server: string): Promise<Caller>;
}

const toolCall = (id: number, name: string, args: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

const DOORS: readonly Door[] = [
  {
    name: 'session era (2025-11-25, raw HTTP)',
    upstream: 'demo',
    async open(gw, server) {
      const url = `${gw.url}/mcp/${server}`;
      const sid = await openSession(url);
      return { call: async (id, name, args) => rpcOf(await post(url, toolCall(id, name, args), sessionHeaders(sid))) as Answer, close: () => {} };
    },
  },
  {
    name: '2026-07-28, translated for a session-era upstream',
    upstream: 'demo',
    async open(gw, server) {
      const url = `${gw.url}/mcp/${server}`;
      return { call: async (id, name, args) => rpcOf(await statelessPost(url, 'tools/call', { name, arguments: args }, { id })) as Answer, close: () => {} };
    },
  },
  {
    name: '2026-07-28, forwarded to a 2026-07-28 upstream',
    upstream: 'stateless',
    async open(gw, server) {
      const url = `${gw.url}/mcp/${server}`;
      return { call: async (id, name, args) => rpcOf(await statelessPost(url, 'tools/call', { name, arguments: args }, { id })) as Answer, close: () => {} };
    },
  },
  {
    name: 'session era, for a 2026-07-28-only upstream (the gateway holds the session)',
    upstream: 'stateless',
    async open(gw, server) {
      const url = `${gw.url}/mcp/${server}`;
      const sid = await openSession(url);
      return { call: async (id, name, args) => rpcOf(await post(url, toolCall(id, name, args), sessionHeaders(sid))) as Answer, close: () => {} };
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
        async call(id, name, args) {
          const res = await postMessage(endpoint, toolCall(id, name, args));
          if (res.status !== 202) return JSON.parse(res.text) as Answer;
          const events = await stream.until((all) => all.some((e) => e.message?.id === id), 15_000);
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

describe('every door: rate limits and time limits', () => {
  let demo: HttpUpstreamProcess;
  let era: EraServer;
  let gw: Gateway;
  const url = (door: Door) => (door.upstream === 'demo' ? demo.url : era.url);

  before(async () => {
    [demo, era] = await Promise.all([startDemoUpstream('doors'), startEraServer('stateless')]);
    const servers: Record<string, unknown> = {};
    DOORS.forEach((door, i) => {
      servers[`limited${i}`] = { upstreams: [{ url: url(door) }], rateLimit: { tools: { [QUICK[door.upstream].name]: { requests: 3, per: '1m' } } } };
      servers[`timed${i}`] = { upstreams: [{ url: url(door) }], timeout: { idle: '1s', max: '20s' } };
    });
    gw = await startGateway({ servers });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([demo?.stop(), era?.stop()]);
  });

  DOORS.forEach((door, i) => {
    describe(door.name, () => {
      it('a tool limited to 3 a minute: the 4th call is refused with MCPGW_ERR_RATE_LIMITED', async () => {
        const caller = await door.open(gw, `limited${i}`);
        try {
          const { name, args } = QUICK[door.upstream];
          for (let n = 1; n <= 3; n++) {
            const answer = await caller.call(n, name, args);
            assert.equal(answer.error, undefined, `call ${n}: ${JSON.stringify(answer.error)}`);
          }
          const refused = await caller.call(4, name, args);
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
          const answer = await caller.call(7, name, args);
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
    });
  });

  /** The upstream's own count of calls it stopped because they were cancelled. */
  async function cancelled(door: Door, i: number): Promise<number> {
    const server = `${gw.url}/mcp/timed${i}`;
    const res = door.upstream === 'demo' ? await post(server, toolCall(99, 'stats', {}), sessionHeaders(await openSession(server))) : await statelessPost(server, 'tools/call', { name: 'stats', arguments: {} }, { id: 99 });
    return (JSON.parse(textOf((rpcOf(res) as Answer).result)) as { cancelled: number }).cancelled;
  }
});
