import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { statelessPost } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { initializeLegacy, LegacyStream, postMessage, type LegacyEvent } from '../helpers/legacy.ts';
import { startPollingUpstream, type PollingUpstream } from '../helpers/polling-upstream.ts';
import { openSession, post, rpcOf, sessionHeaders, type RawResponse } from '../helpers/raw.ts';
import { until } from '../helpers/streams.ts';

/**
 * SEP-1699 (2025-11-25): an upstream may end a request's SSE stream before its answer and have
 * its client poll (GET + Last-Event-ID, after its `retry:`). Through the gateway, whatever door
 * the client came in by, the client gets the answer — or, within the request's time limit, an
 * error that says what happened — and never waits for nothing.
 */

const RETRY_MS = 200;
/** Timer slack: a resumption is never early by more than this. */
const EARLY_MS = 20;

const call = (id: number | string, closes: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'poll', arguments: { closes } } });
const errorCode = (m: { error?: { data?: { code?: string } } } | undefined) => m?.error?.data?.code;
const answerTo = (id: unknown) => (events: readonly LegacyEvent[]) => events.some((e) => e.message?.id === id && e.message?.method === undefined);

/** Resolves with `p`, or fails once `ms` passed: a hang is a failure, not a stuck test. */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('SEP-1699: an upstream that ends a request stream before its answer', () => {
  let upstream: PollingUpstream;
  let refusing: PollingUpstream;
  let gw: Gateway;
  before(async () => {
    [upstream, refusing] = await Promise.all([startPollingUpstream({ retryMs: RETRY_MS }), startPollingUpstream({ retryMs: RETRY_MS, refuse: 405 })]);
    gw = await startGateway({
      servers: {
        poll: { upstreams: [{ url: upstream.url }], era: 'session', timeout: { idle: '5s' } },
        // The same upstream under a short time limit, for calls it never answers.
        short: { upstreams: [{ url: upstream.url }], era: 'session', timeout: { idle: '1s' } },
        refuse: { upstreams: [{ url: refusing.url }], era: 'session' },
        // A virtual server over it: its tool is poll__poll.
        virtual: { compose: ['poll'] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([upstream?.close(), refusing?.close()]);
  });

  /** The resumptions of one call (its event ids carry the upstream's call key). */
  const resumesSince = (u: PollingUpstream, from: number) => u.resumes.slice(from);

  describe('a session (2025-11-25) client', () => {
    const callOnce = async (server: string, id: number, closes: number): Promise<RawResponse> => {
      const url = `${gw.url}/mcp/${server}`;
      const sid = await openSession(url);
      return within(15_000, post(url, call(id, closes), sessionHeaders(sid)), `tools/call on ${server}`);
    };

    it('gets the answer on its stream: the gateway resumes the upstream after its retry:', async () => {
      const from = upstream.resumes.length;
      const res = await callOnce('poll', 1, 1);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(rpcOf(res).result, { content: [{ type: 'text', text: 'polled 1 times' }] });
      const resumes = resumesSince(upstream, from);
      assert.equal(resumes.length, 1);
      assert.ok(resumes[0]!.afterEndMs >= RETRY_MS - EARLY_MS, `resumed ${resumes[0]!.afterEndMs} ms after the end, before the upstream's retry: ${RETRY_MS}`);
      // The resumption that carried the answer is held open upstream (as the SDK does): the gateway lets it go.
      await until(() => upstream.openStreams === 0, 'the upstream stream is let go after the answer');
    });

    it('gets the answer when the upstream ends the stream again and again before it (a long call, polled)', async () => {
      const from = upstream.resumes.length;
      const res = await callOnce('poll', 2, 5);
      assert.deepEqual(rpcOf(res).result, { content: [{ type: 'text', text: 'polled 5 times' }] }, res.text);
      for (const r of resumesSince(upstream, from)) assert.ok(r.afterEndMs >= RETRY_MS - EARLY_MS, `a resumption ${r.afterEndMs} ms after the end`);
    });

    it('a call the upstream never answers ends with MCPGW_ERR_UPSTREAM_TIMEOUT at the time limit', async () => {
      const started = Date.now();
      const res = await callOnce('short', 3, -1);
      const elapsed = Date.now() - started;
      assert.equal(errorCode(rpcOf(res)), 'MCPGW_ERR_UPSTREAM_TIMEOUT', res.text);
      assert.ok(elapsed >= 900 && elapsed < 5_000, `ended after ${elapsed} ms (timeout.idle 1s)`);
    });

    it('progress on a resumed upstream stream is activity: a long polled call outlives the idle limit', async () => {
      // Each resumption is held 400 ms with progress every 100 ms; 3 of them with the retry gaps
      // take ≈ 2 s, twice the 1 s idle limit, while no silence lasts longer than ≈ 300 ms.
      const chatty = await startPollingUpstream({ retryMs: RETRY_MS, holdMs: 400, progressMs: 100 });
      const g = await startGateway({ servers: { chatty: { upstreams: [{ url: chatty.url }], era: 'session', timeout: { idle: '1s' } } } });
      try {
        const url = `${g.url}/mcp/chatty`;
        const sid = await openSession(url);
        const started = Date.now();
        const res = await within(15_000, post(url, call(9, 3), sessionHeaders(sid)), 'tools/call on chatty');
        assert.deepEqual(rpcOf(res).result, { content: [{ type: 'text', text: 'polled 3 times' }] }, res.text);
        assert.ok(Date.now() - started > 1_000, 'the call took longer than the idle limit');
      } finally {
        await g.close();
        await chatty.close();
      }
    });

    it('gets the answer through a virtual server too (the member is polled at its own event id)', async () => {
      const url = `${gw.url}/mcp/virtual`;
      const sid = await openSession(url);
      const res = await within(15_000, post(url, { ...call(8, 2), params: { name: 'poll__poll', arguments: { closes: 2 } } }, sessionHeaders(sid)), 'tools/call on virtual');
      assert.deepEqual(rpcOf(res).result, { content: [{ type: 'text', text: 'polled 2 times' }] }, res.text);
    });

    it('a resumption the upstream refuses ends the call with MCPGW_ERR_STREAM_LOST at once', async () => {
      const started = Date.now();
      const res = await callOnce('refuse', 4, 1);
      assert.equal(errorCode(rpcOf(res)), 'MCPGW_ERR_STREAM_LOST', res.text);
      assert.ok(Date.now() - started < 3_000);
    });
  });

  describe('a 2024-11-05 client', () => {
    const session = async (server: string) => {
      const url = `${gw.url}/mcp/${server}/sse`;
      const stream = await LegacyStream.open(url);
      await stream.until((events) => events.some((e) => e.event === 'endpoint'));
      const endpoint = stream.endpoint(url);
      await initializeLegacy(stream, endpoint);
      return { stream, endpoint };
    };

    it('gets the answer on its session stream, the upstream resumed after its retry:', async (t) => {
      const { stream, endpoint } = await session('poll');
      t.after(() => stream.drop());
      const from = upstream.resumes.length;
      assert.equal((await postMessage(endpoint, call('l1', 3))).status, 202);
      const events = await stream.until(answerTo('l1'), 10_000);
      assert.deepEqual(events.find((e) => e.message?.id === 'l1')!.message!.result, { content: [{ type: 'text', text: 'polled 3 times' }] });
      for (const r of resumesSince(upstream, from)) assert.ok(r.afterEndMs >= RETRY_MS - EARLY_MS, `a resumption ${r.afterEndMs} ms after the end`);
      await until(() => upstream.openStreams === 0, 'the upstream stream is let go after the answer');
    });

    it('a resumption the upstream refuses: MCPGW_ERR_STREAM_LOST on the session stream', async (t) => {
      const { stream, endpoint } = await session('refuse');
      t.after(() => stream.drop());
      await postMessage(endpoint, call('l2', 1));
      const events = await stream.until(answerTo('l2'), 5_000);
      assert.equal(errorCode(events.find((e) => e.message?.id === 'l2')!.message), 'MCPGW_ERR_STREAM_LOST');
    });

    it('a call the upstream never answers: MCPGW_ERR_STREAM_LOST within the time limit', async (t) => {
      const { stream, endpoint } = await session('short');
      t.after(() => stream.drop());
      const started = Date.now();
      await postMessage(endpoint, call('l3', -1));
      const events = await stream.until(answerTo('l3'), 5_000);
      assert.equal(errorCode(events.find((e) => e.message?.id === 'l3')!.message), 'MCPGW_ERR_STREAM_LOST');
      assert.ok(Date.now() - started < 3_000);
    });
  });

  describe('a 2026-07-28 client, translated onto the session upstream', () => {
    const callOnce = (server: string, id: number, closes: number) => within(15_000, statelessPost(`${gw.url}/mcp/${server}`, 'tools/call', { name: 'poll', arguments: { closes } }, { id }), `tools/call on ${server}`);

    it('gets the answer; the upstream is resumed after its retry:', async () => {
      const from = upstream.resumes.length;
      const res = await callOnce('poll', 5, 3);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual((rpcOf(res).result as { content?: unknown }).content, [{ type: 'text', text: 'polled 3 times' }]);
      const resumes = resumesSince(upstream, from);
      assert.equal(resumes.length, 3);
      for (const r of resumes) assert.ok(r.afterEndMs >= RETRY_MS - EARLY_MS, `a resumption ${r.afterEndMs} ms after the end`);
      await until(() => upstream.openStreams === 0, 'the upstream stream is let go after the answer');
    });

    it('a call the upstream never answers: MCPGW_ERR_STREAM_LOST within the time limit', async () => {
      const started = Date.now();
      const res = await callOnce('short', 6, -1);
      assert.equal(errorCode(rpcOf(res)), 'MCPGW_ERR_STREAM_LOST', res.text);
      assert.ok(Date.now() - started < 3_000);
    });

    it('a resumption the upstream refuses: MCPGW_ERR_STREAM_LOST', async () => {
      const res = await callOnce('refuse', 7, 1);
      assert.equal(errorCode(rpcOf(res)), 'MCPGW_ERR_STREAM_LOST', res.text);
    });
  });
});
