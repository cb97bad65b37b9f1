import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { openSession, post, rpcOf } from '../helpers/raw.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { postSse, progressOf, readSse, resumeSse, slowCount, type SseEvent } from '../helpers/sse.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';
import { demoServerPath } from '../../src/config/load.ts';

const V = { 'mcp-protocol-version': '2025-11-25' };
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const resultOf = (events: SseEvent[], id: unknown) => events.filter((e) => e.message?.id === id && (e.message?.result || e.message?.error));

for (const store of ['memory', 'redis'] as const) {
  for (const kind of ['http', 'stdio'] as const) {
    describe(`resumption on the same replica (${store} log, ${kind} upstream)`, () => {
      let redis: RedisServer | undefined;
      let upstream: HttpUpstreamProcess | undefined;
      let gw: Gateway;
      let url: string;
      before(async () => {
        if (store === 'redis') redis = await startRedis();
        const upstreams = kind === 'http' ? [{ url: (upstream = await startDemoUpstream('u')).url }] : [{ command: process.execPath, args: [demoServerPath()] }];
        gw = await startGateway({ ...(redis ? { redis: { url: redis.url } } : {}), servers: { api: { upstreams } } });
        url = `${gw.url}/mcp/api`;
      });
      after(async () => {
        await gw?.close();
        await Promise.all([upstream?.stop(), redis?.stop()]);
      });

      it('a dropped POST stream resumes with Last-Event-ID: every remaining event once, in order, then the result', async () => {
        const sid = await openSession(url);
        const headers = { 'mcp-session-id': sid, ...V };
        const { res, abort } = await postSse(url, slowCount(7, 20, 20), headers);
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
        const first = await readSse(res, (_e, all) => progressOf(all).length >= 5, abort);
        assert.equal(first[0]!.data, '', 'a priming event (id, empty data) comes first');
        assert.match(first[0]!.id ?? '', /^[A-Za-z0-9_-]+\.0$/);
        assert.deepEqual(progressOf(first), [1, 2, 3, 4, 5]);
        const last = first.at(-1)!.id!;

        await sleep(100); // the upstream goes on meanwhile; the gateway keeps logging it
        const again = await resumeSse(url, last, headers);
        assert.equal(again.res.status, 200);
        const rest = await readSse(again.res, (e) => e.message?.id === 7);
        assert.deepEqual(progressOf(rest), range(6, 20));
        assert.equal(resultOf(rest, 7).length, 1);
        const ids = [...first, ...rest].map((e) => e.id).filter((id) => id !== undefined);
        assert.equal(new Set(ids).size, ids.length, 'event ids are unique');
      });

      it('replays only the stream the id belongs to, never events of other streams', async () => {
        const sid = await openSession(url);
        const headers = { 'mcp-session-id': sid, ...V };
        const a = await postSse(url, slowCount('a', 10, 15, 'ta'), headers);
        const b = await postSse(url, slowCount('b', 10, 15, 'tb'), headers);
        const firstA = await readSse(a.res, (_e, all) => progressOf(all).length >= 3, a.abort);
        const allB = await readSse(b.res, (e) => e.message?.id === 'b');
        assert.deepEqual(progressOf(allB, 'tb'), range(1, 10));
        const rest = await readSse((await resumeSse(url, firstA.at(-1)!.id!, headers)).res, (e) => e.message?.id === 'a');
        assert.deepEqual(progressOf(rest, 'tb'), [], 'no event of stream b');
        assert.deepEqual(progressOf(rest, 'ta'), range(4, 10));
        assert.equal(resultOf(rest, 'a').length, 1);
      });

      it('resuming after the stream finished replays the rest and ends', async () => {
        const sid = await openSession(url);
        const headers = { 'mcp-session-id': sid, ...V };
        const { res, abort } = await postSse(url, slowCount(9, 6, 10), headers);
        const first = await readSse(res, (_e, all) => progressOf(all).length >= 2, abort);
        await sleep(300); // the call completes while nobody listens
        const rest = await readSse((await resumeSse(url, first.at(-1)!.id!, headers)).res, () => false);
        assert.deepEqual(progressOf(rest), range(3, 6));
        assert.equal(resultOf(rest, 9).length, 1);
      });

      it('refuses an id it never issued, and another session\'s ids, with 410', async () => {
        const sid = await openSession(url);
        const headers = { 'mcp-session-id': sid, ...V };
        const { res } = await postSse(url, slowCount(3, 2, 1), headers);
        const events = await readSse(res, () => false);
        const other = await openSession(url);
        for (const [id, h] of [
          ['garbage', headers],
          ['nosuchstream.3', headers],
          [events[0]!.id!, { 'mcp-session-id': other, ...V }],
        ] as const) {
          const r = await fetch(url, { headers: { accept: 'text/event-stream', 'last-event-id': id, ...h } });
          assert.equal(r.status, 410, id);
          const body = (await r.json()) as { error: { data: { code: string } } };
          assert.equal(body.error.data.code, 'MCPGW_ERR_EVENTS_GONE');
        }
      });

      it('counts resume outcomes in mcp_resume_total', async () => {
        const text = await (await fetch(`${gw.metricsUrl}/metrics`)).text();
        const count = (outcome: string) => Number(new RegExp(`^mcp_resume_total\\{outcome="${outcome}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
        assert.ok(count('hit') >= 3, `hits: ${count('hit')}`);
        assert.ok(count('miss') >= 3, `misses: ${count('miss')}`);
        assert.match(text, /^mcp_event_log_append_duration_seconds_count \d+/m);
      });

      it('sends an answer that comes at once as plain JSON (no stream to resume), a slower one as SSE', async () => {
        const sid = await openSession(url);
        const headers = { 'mcp-session-id': sid, ...V };
        const quick = await post(url, { jsonrpc: '2.0', id: 'q', method: 'tools/call', params: { name: 'echo', arguments: { text: 'quick' } } }, headers);
        assert.equal(quick.status, 200);
        assert.match(quick.headers.get('content-type') ?? '', /^application\/json/);
        assert.deepEqual((quick.json as { id: string }).id, 'q');
        assert.match(quick.text, /quick/);
        const slow = await post(url, slowCount('s', 2, 30), headers);
        assert.match(slow.headers.get('content-type') ?? '', /^text\/event-stream/);
      });

      it('keeps the session working after resumptions', async () => {
        const sid = await openSession(url);
        const res = await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'still here' } } }, { 'mcp-session-id': sid, ...V });
        assert.match(JSON.stringify(rpcOf(res)), /still here/);
      });
    });
  }
}
