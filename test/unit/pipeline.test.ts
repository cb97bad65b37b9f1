import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { GatewayError } from '../../src/errors.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { Concurrency } from '../../src/pipeline/concurrency.ts';
import { Deadlines } from '../../src/pipeline/deadline.ts';
import { Limit } from '../../src/pipeline/limit.ts';
import type { PipelineRequest } from '../../src/pipeline/request.ts';
import { envelope } from '../../src/protocol/jsonrpc.ts';
import { MemoryRateLimiter } from '../../src/resilience/limiter.ts';
import type { UpstreamResponse } from '../../src/upstream/types.ts';
import { Pool, type Dispatcher } from 'undici';

/** The pipeline's stages alone, without a gateway (src/pipeline/). */

const config = loadConfig({
  document: {
    servers: {
      limited: { upstreams: [{ url: 'http://127.0.0.1:1/mcp' }], rateLimit: { tools: { echo: { requests: 2, per: '1m' } } } },
      timed: { upstreams: [{ url: 'http://127.0.0.1:1/mcp' }], timeout: { idle: '100ms', max: '10s' } },
      capped: { upstreams: [{ url: 'http://127.0.0.1:1/mcp' }], tools: { echo: { concurrency: 2 } } },
    },
  },
  env: {},
}).config;

const request = (server: string, messages: Record<string, unknown>[], door: PipelineRequest['door'] = 'stateless'): PipelineRequest => ({
  server,
  principal: undefined,
  holder: 'addr:test',
  messages: messages.map(envelope),
  door,
  headers: {},
  batch: messages.length > 1,
  protocolVersion: '2025-11-25',
});
const echo = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: {} } });

describe('concurrency cap', () => {
  const metrics = () => new Metrics({ defaultMetrics: false, toolLabels: false, toolLabelLimit: 10 });
  const as = (holder: string, messages: Record<string, unknown>[]) => ({ ...request('capped', messages), holder });

  it('holds slots per caller, refuses past the cap without Retry-After, gives each back once and forgets a caller at zero', () => {
    const cap = new Concurrency({ config, metrics: metrics() });
    const first = cap.take(as('a', [echo(1)]))!;
    const second = cap.take(as('a', [echo(2)]))!;
    assert.throws(
      () => cap.take(as('a', [echo(3)])),
      (err: GatewayError) => err.code === 'MCPGW_ERR_RATE_LIMITED' && err.headers === undefined && /at most 2 calls of tool "echo" at once/.test(err.message),
    );
    assert.ok(cap.take(as('b', [echo(1)])), 'another caller has its own cap');
    first.settle();
    first.settle();
    assert.equal(cap.running, 2, 'a second release gives nothing back');
    const third = cap.take(as('a', [echo(3)]))!;
    assert.throws(() => cap.take(as('a', [echo(4), echo(5)])), (err: GatewayError) => err.code === 'MCPGW_ERR_RATE_LIMITED', 'a batch takes a slot for each call');
    second.settle();
    third.settle();
    assert.equal(cap.take(as('a', [{ jsonrpc: '2.0', id: 1, method: 'tools/list' }])), undefined, 'other methods are not capped');
  });

  it('kept slots outlive the answer and are given back once by their keeper; a request going on with them takes none', () => {
    const cap = new Concurrency({ config, metrics: metrics() });
    const parked = cap.take(as('a', [echo(1)]))!;
    const release = parked.keep()!;
    assert.equal(parked.keep(), undefined, 'kept once');
    parked.settle();
    assert.equal(cap.running, 1, "the answer's end gives kept slots nothing back");
    // The retry of the parked call goes on with its slot; a call of another caller or beside it takes its own.
    assert.equal(cap.take({ ...as('a', [echo(2)]), continues: parked }), undefined);
    assert.equal(cap.running, 1);
    const beside = cap.take({ ...as('a', [echo(3), echo(4)]), continues: parked })!;
    assert.equal(cap.running, 2, 'only one call of a request goes on with the parked one');
    const other = cap.take({ ...as('b', [echo(5)]), continues: parked })!;
    assert.equal(cap.running, 3, "another caller's call takes its own");
    beside.settle();
    other.settle();
    release();
    release();
    parked.settle();
    assert.equal(cap.running, 0, 'given back once');
    // Given back: a request naming them takes its own again.
    cap.take({ ...as('a', [echo(6)]), continues: parked })!.settle();
    assert.equal(parked.keep(), undefined, 'given back slots cannot be kept');
    const settled = cap.take(as('a', [echo(7)]))!;
    settled.settle();
    assert.equal(settled.keep(), undefined, 'nor slots the answer gave back');
    assert.equal(cap.running, 0);
  });
});

describe('limit stage', () => {
  const limit = new Limit({ config, metrics: new Metrics({ defaultMetrics: false, toolLabels: false, toolLabelLimit: 10 }), limiter: new MemoryRateLimiter(), prefix: '' });

  it('admits at once (no promise) what nothing limits', () => {
    assert.equal(limit.admit(request('timed', [echo(1)])), undefined);
    assert.equal(limit.admit(request('limited', [{ jsonrpc: '2.0', method: 'notifications/initialized' }])), undefined, 'a notification is no request');
  });

  it('charges a tools/call sent as a notification (no id) like a request', async () => {
    const once = new Limit({ config, metrics: new Metrics({ defaultMetrics: false, toolLabels: false, toolLabelLimit: 10 }), limiter: new MemoryRateLimiter(), prefix: '' });
    const { id: _id, ...note } = echo(0);
    await once.admit(request('limited', [note]));
    await once.admit(request('limited', [echo(1)]));
    await assert.rejects(async () => once.admit(request('limited', [echo(2)])), (err: GatewayError) => err.code === 'MCPGW_ERR_RATE_LIMITED');
  });

  it('refuses a tool past its limit, with Retry-After', async () => {
    await limit.admit(request('limited', [echo(1)]));
    await limit.admit(request('limited', [echo(2)], 'legacy'));
    await assert.rejects(
      async () => limit.admit(request('limited', [echo(3)], 'session')),
      (err: GatewayError) => err.code === 'MCPGW_ERR_RATE_LIMITED' && Number(err.headers?.['retry-after']) >= 1,
    );
  });
});

describe('deadline stage', () => {
  const deadlines = new Deadlines({ config, interrupt: () => false, onTimeout: () => {} });

  it('times requests and batches, and no subscriptions/listen stream', () => {
    assert.equal(deadlines.start(request('timed', [{ jsonrpc: '2.0', method: 'notifications/progress', params: {} }])), undefined);
    assert.equal(deadlines.start(request('timed', [{ jsonrpc: '2.0', id: 1, method: 'subscriptions/listen', params: {} }])), undefined);
    const batch = deadlines.start(request('timed', [echo(1), echo(2)]));
    assert.ok(batch, 'a batch is timed too');
    batch.finish();
  });

  it('a batch whose answer does not come: an array of the error, one per request id', async () => {
    const timed = deadlines.start(request('timed', [echo(11), { jsonrpc: '2.0', method: 'notifications/x' }, echo(12)]))!;
    const res = await timed.response(new Promise<UpstreamResponse>(() => {}));
    const answers = JSON.parse(res.body as string) as { id: number; error: { data: { code: string } } }[];
    assert.deepEqual(answers.map((a) => [a.id, a.error.data.code]), [[11, 'MCPGW_ERR_UPSTREAM_TIMEOUT'], [12, 'MCPGW_ERR_UPSTREAM_TIMEOUT']]);
  });

  it('SSE comments and keep-alive lines are no activity; the answer event ends the limit', async () => {
    const upstream = new PassThrough();
    const timed = deadlines.start(request('timed', [echo(8)]))!;
    const res = await timed.response(Promise.resolve({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: upstream }));
    (res.body as PassThrough).resume();
    for (let i = 0; i < 4; i++) {
      upstream.write(i % 2 ? ': keep-alive\n\n' : 'id: 7\ndata: \n\n');
      await new Promise((r) => setTimeout(r, 40));
    }
    assert.equal(timed.expiry.aborted, true, 'no real event for 160 ms: the 100 ms idle limit expired');
    const source = new PassThrough();
    const answered = deadlines.start(request('timed', [echo(9)]))!;
    const res2 = await answered.response(Promise.resolve({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: source }));
    (res2.body as PassThrough).resume();
    source.write('event: message\ndata: {"jsonrpc":"2.0","id":9,"result":{}}\n\n');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(answered.expiry.aborted, false, 'answered: the limit is lifted though the stream stays open');
    source.destroy();
  });

  it('an answer that does not come: MCPGW_ERR_UPSTREAM_TIMEOUT, the signal aborts, the upstream is told', async () => {
    const cancelled: string[] = [];
    const timed = deadlines.start(request('timed', [echo(5)]), (_id, reason) => cancelled.push(reason))!;
    await assert.rejects(timed.response(new Promise<UpstreamResponse>(() => {})), (err: GatewayError) => err.code === 'MCPGW_ERR_UPSTREAM_TIMEOUT' && /no progress for 100 ms/.test(err.message));
    assert.equal(timed.expiry.aborted, true);
    assert.equal(timed.expiry.signal.aborted, true, 'a signal asked for after the expiry is aborted already');
    assert.equal((timed.expiry.signal.reason as GatewayError).code, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    assert.deepEqual(cancelled, ['gateway timeout (idle)']);
  });

  it("the expiry ends an undici request in flight (undici takes it as its signal) and aborts a signal asked for before", async () => {
    const seen: string[] = [];
    const server = createServer((req) => {
      // Never answers: only the expiry ends the request.
      req.on('close', () => seen.push('upstream saw the request go'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const timed = deadlines.start(request('timed', [echo(11)]))!;
      const early = timed.expiry.signal;
      const sent = pool.request({ path: '/', method: 'POST', body: '{}', signal: timed.expiry as unknown as Dispatcher.RequestOptions['signal'] });
      await assert.rejects(timed.response(sent.then(() => ({ status: 200, headers: {}, body: null }))), (err: GatewayError) => err.code === 'MCPGW_ERR_UPSTREAM_TIMEOUT');
      await assert.rejects(sent, (err: GatewayError) => err.code === 'MCPGW_ERR_UPSTREAM_TIMEOUT', 'undici ended the request with the expiry as its reason');
      assert.equal(early.aborted, true);
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(seen, ['upstream saw the request go']);
    } finally {
      await pool.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('an SSE answer: each chunk is activity; when it stops, the error is its last event', async () => {
    const upstream = new PassThrough();
    const timed = deadlines.start(request('timed', [echo(6)]))!;
    const res = await timed.response(Promise.resolve({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: upstream }));
    const chunks: string[] = [];
    (res.body as PassThrough).on('data', (c: Buffer) => chunks.push(c.toString()));
    for (let i = 0; i < 4; i++) {
      upstream.write(`event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":${i}}}\n\n`);
      await new Promise((r) => setTimeout(r, 60));
    }
    assert.equal(timed.expiry.aborted, false, 'activity kept it alive past 100 ms');
    await new Promise((r) => (res.body as PassThrough).once('end', r));
    assert.equal(timed.expiry.aborted, true);
    const last = JSON.parse(chunks.at(-1)!.split('data: ')[1]!) as { id: number; error: { data: { code: string } } };
    assert.equal(last.id, 6);
    assert.equal(last.error.data.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    assert.equal(upstream.destroyed, true, 'the upstream answer is cut');
  });
});

describe('the Admitted token', () => {
  it('is minted by the pipeline run alone', () => {
    const files = readdirSync('src', { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const minting = files.filter((f) => /as Admitted\b/.test(readFileSync(join('src', f), 'utf8')));
    assert.deepEqual(minting, [join('pipeline', 'pipeline.ts')]);
  });
});
