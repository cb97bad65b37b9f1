import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { createParser } from 'eventsource-parser';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { spawnGateway, startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { openSession, post, rpcOf } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { postSse, progressOf, readSse, resumeSse, slowCount, type SseEvent } from '../helpers/sse.ts';
import { metricValue, until } from '../helpers/streams.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const V = { 'mcp-protocol-version': '2025-11-25' };
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** Resumption when things go wrong: found by a chaos run (backlogs, Redis going away). */
describe('event log trouble', () => {
  let upstream: HttpUpstreamProcess;
  before(async () => {
    upstream = await startDemoUpstream('u');
  });
  after(async () => {
    await upstream?.stop();
  });

  it('a backlog far larger than events.maxBuffer is replayed at the pace the client reads, whole', { timeout: 60_000 }, async () => {
    let gw: Gateway | undefined;
    try {
      gw = await startGateway({ events: { maxBuffer: 16_384 }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
      const url = `${gw.url}/mcp/api`;
      const headers = { 'mcp-session-id': await openSession(url), ...V };
      const COUNT = 2_000;
      const { res, abort } = await postSse(url, slowCount(7, COUNT, 0), headers);
      const first = await readSse(res, (_e, all) => progressOf(all).length >= 5, abort);
      // The stream runs to its end without its client (~135 bytes an event: 260 KiB to catch up on).
      await until(async () => (await metricValue(gw!, 'mcp_upstream_streams', { server: 'api' })) === 0, 'the call to finish upstream', 30_000);
      const again = await resumeSse(url, first.at(-1)!.id!, headers);
      assert.equal(again.res.status, 200);
      const rest = await readSse(again.res, (e) => e.message?.id === 7);
      assert.deepEqual(progressOf(rest), range(6, COUNT), 'every event after the position, once, in order');
      assert.equal(rest.filter((e) => e.message?.id === 7).length, 1, 'and the answer');
    } finally {
      await gw?.close();
    }
  });

  it('a client that stops reading while it catches up on a live stream: the replica holds little of the stream for it, and it still gets every event once, in order', { timeout: 60_000 }, async () => {
    let gw: Gateway | undefined;
    try {
      gw = await startGateway({ events: { maxBuffer: 65_536 }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
      const url = `${gw.url}/mcp/api`;
      const headers = { 'mcp-session-id': await openSession(url), ...V };
      // The standalone stream's first id, then its client leaves (the replica goes on reading it).
      const get = await fetch(url, { headers: { ...headers, accept: 'text/event-stream' } });
      const [priming] = await readSse(get, () => true);
      const pad = 'x'.repeat(100_000);
      const announce = async (n: number) => {
        const res = await post(url, { jsonrpc: '2.0', id: 1_000 + n, method: 'tools/call', params: { name: 'announce', arguments: { text: `${n}:${pad}` } } }, headers);
        assert.equal(res.status, 200);
      };
      const announced = (events: SseEvent[]) => events.filter((e) => e.message?.method === 'notifications/message').map((e) => Number(String((e.message!.params as { data?: unknown }).data).split(':')[0]));
      // A backlog of 4 MB: more than the sockets take, so the replay waits for the client.
      for (let n = 1; n <= 40; n++) await announce(n);
      await new Promise((r) => setTimeout(r, 300));
      const events: SseEvent[] = [];
      const done = new Promise<void>((resolve, reject) => {
        const req = httpGet(url, { headers: { ...headers, accept: 'text/event-stream', 'last-event-id': priming!.id! } }, (again) => {
          assert.equal(again.statusCode, 200);
          // The client reads nothing for a while, and the stream goes on meanwhile (1 MB more).
          again.pause();
          setTimeout(() => again.resume(), 2_000);
          const parser = createParser({
            onEvent: (m) => {
              events.push({ id: m.id, data: m.data, message: m.data ? (JSON.parse(m.data) as SseEvent['message']) : undefined });
              if (announced(events).at(-1) === 50) {
                req.destroy();
                resolve();
              }
            },
          });
          again.setEncoding('utf8');
          again.on('data', (chunk: string) => parser.feed(chunk));
          again.on('end', () => reject(new Error(`the stream ended after ${announced(events).length} messages`)));
        });
        req.on('error', reject);
      });
      await new Promise((r) => setTimeout(r, 300));
      for (let n = 41; n <= 50; n++) await announce(n);
      await done;
      assert.deepEqual(announced(events), range(1, 50), 'every message after the position, once, in order');
    } finally {
      await gw?.close();
    }
  });

  it('a client resuming further back than events.maxLength on the producing replica is counted as evicted', { timeout: 60_000 }, async () => {
    let gw: Gateway | undefined;
    try {
      gw = await startGateway({ events: { maxLength: 50 }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
      const url = `${gw.url}/mcp/api`;
      const headers = { 'mcp-session-id': await openSession(url), ...V };
      const { res, abort } = await postSse(url, slowCount(12, 400, 10), headers);
      const first = await readSse(res, (_e, all) => progressOf(all).length >= 5, abort);
      await new Promise((r) => setTimeout(r, 1_500)); // ~150 more events: the first ones are trimmed
      const again = await resumeSse(url, first.at(-1)!.id!, headers);
      const rest = await readSse(again.res, (e) => e.message?.id === 12);
      assert.ok(progressOf(rest)[0]! > 6, 'the oldest missed events are gone');
      assert.equal(rest.filter((e) => e.message?.id === 12).length, 1, 'the answer still arrives');
      assert.equal(await metricValue(gw, 'mcp_resume_total', { outcome: 'evicted' }), 1);
      assert.equal(await metricValue(gw, 'mcp_resume_total', { outcome: 'hit' }), 0);
    } finally {
      await gw?.close();
    }
  });

  it('a Redis that stops answering (SIGSTOP) slows requests by seconds at most, not for as long as it hangs', { timeout: 60_000 }, async () => {
    let redis: RedisServer | undefined;
    let gw: Gateway | undefined;
    try {
      redis = await startRedis();
      gw = await startGateway({ redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
      const url = `${gw.url}/mcp/api`;
      const headers = { 'mcp-session-id': await openSession(url), ...V };
      redis.child.proc.kill('SIGSTOP');
      try {
        const started = Date.now();
        const sid = await openSession(url);
        const echo = await post(url, { jsonrpc: '2.0', id: 11, method: 'tools/call', params: { name: 'echo', arguments: { text: 'paused' } } }, headers);
        assert.ok(sid);
        assert.match(JSON.stringify(rpcOf(echo)), /paused/);
        assert.ok(Date.now() - started < 8_000, `answered in ${Date.now() - started} ms while Redis was paused`);
      } finally {
        redis.child.proc.kill('SIGCONT');
      }
    } finally {
      await gw?.close();
      await redis?.stop();
    }
  });

  it('Redis gone: resuming on the replica producing the stream is refused or ended, and the replica lives on', { timeout: 60_000 }, async () => {
    let redis: RedisServer | undefined;
    let a: GatewayProcess | undefined;
    try {
      redis = await startRedis();
      a = await spawnGateway({ redis: { url: redis.url }, servers: { api: { upstreams: [{ url: upstream.url }] } } });
      const url = `${a.url}/mcp/api`;
      const headers = { 'mcp-session-id': await openSession(url), ...V };
      const { res, abort } = await postSse(url, slowCount(9, 60, 50), headers);
      const first = await readSse(res, (_e, all) => progressOf(all).length >= 5, abort);
      await redis.stop();
      redis = undefined;
      const again = await resumeSse(url, first.at(-1)!.id!, headers).catch(() => undefined);
      if (again) await again.res.text().catch(() => '');
      // A plain reconnect of the standalone stream, too (what SDK clients do on their own).
      const get = await fetch(url, { headers: { ...headers, accept: 'text/event-stream' }, signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      await get?.body?.cancel().catch(() => {});
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(a.child.proc.exitCode, null, `the replica is still running:\n${a.child.output.slice(-5).join('\n')}`);
      assert.equal((await fetch(`${a.url}/healthz`)).status, 200);
      const echo = await post(url, { jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'echo', arguments: { text: 'still here' } } }, headers);
      assert.match(JSON.stringify(rpcOf(echo)), /still here/);
    } finally {
      await a?.stop();
      await redis?.stop();
    }
  });
});
