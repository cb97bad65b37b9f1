import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { GatewayError } from '../../src/errors.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { Deadlines } from '../../src/pipeline/deadline.ts';
import { Limit } from '../../src/pipeline/limit.ts';
import type { PipelineRequest } from '../../src/pipeline/request.ts';
import { envelope } from '../../src/protocol/jsonrpc.ts';
import { MemoryRateLimiter } from '../../src/resilience/limiter.ts';
import type { UpstreamResponse } from '../../src/upstream/types.ts';

/** The pipeline's stages alone, without a gateway (src/pipeline/). */

const config = loadConfig({
  document: {
    servers: {
      limited: { upstreams: [{ url: 'http://127.0.0.1:1/mcp' }], rateLimit: { tools: { echo: { requests: 2, per: '1m' } } } },
      timed: { upstreams: [{ url: 'http://127.0.0.1:1/mcp' }], timeout: { idle: '100ms', max: '10s' } },
    },
  },
  env: {},
}).config;

const request = (server: string, messages: Record<string, unknown>[], door: PipelineRequest['door'] = 'stateless'): PipelineRequest => ({ server, principal: undefined, holder: 'addr:test', messages: messages.map(envelope), door });
const echo = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: {} } });

describe('limit stage', () => {
  const limit = new Limit({ config, metrics: new Metrics({ defaultMetrics: false, toolLabels: false, toolLabelLimit: 10 }), limiter: new MemoryRateLimiter(), prefix: '' });

  it('admits at once (no promise) what nothing limits', () => {
    const admitted = limit.admit(request('timed', [echo(1)]));
    assert.ok(!(admitted instanceof Promise));
    assert.ok(!(limit.admit(request('limited', [{ jsonrpc: '2.0', method: 'notifications/initialized' }])) instanceof Promise), 'a notification is no request');
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
  const deadlines = new Deadlines(config);

  it('times single requests only, and no subscriptions/listen stream', () => {
    assert.equal(deadlines.start(request('timed', [{ jsonrpc: '2.0', method: 'notifications/progress', params: {} }])), undefined);
    assert.equal(deadlines.start(request('timed', [echo(1), echo(2)])), undefined);
    assert.equal(deadlines.start(request('timed', [{ jsonrpc: '2.0', id: 1, method: 'subscriptions/listen', params: {} }])), undefined);
  });

  it('an answer that does not come: MCPGW_ERR_UPSTREAM_TIMEOUT, the signal aborts, the upstream is told', async () => {
    const cancelled: string[] = [];
    const timed = deadlines.start(request('timed', [echo(5)]), (reason) => cancelled.push(reason))!;
    await assert.rejects(timed.response(new Promise<UpstreamResponse>(() => {})), (err: GatewayError) => err.code === 'MCPGW_ERR_UPSTREAM_TIMEOUT' && /no progress for 100 ms/.test(err.message));
    assert.equal(timed.signal.aborted, true);
    assert.deepEqual(cancelled, ['gateway timeout (idle)']);
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
    assert.equal(timed.signal.aborted, false, 'activity kept it alive past 100 ms');
    await new Promise((r) => (res.body as PassThrough).once('end', r));
    assert.equal(timed.signal.aborted, true);
    const last = JSON.parse(chunks.at(-1)!.split('data: ')[1]!) as { id: number; error: { data: { code: string } } };
    assert.equal(last.id, 6);
    assert.equal(last.error.data.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
    assert.equal(upstream.destroyed, true, 'the upstream answer is cut');
  });
});

describe('the Admitted token', () => {
  it('is minted by the limit stage alone', () => {
    const files = readdirSync('src', { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    const minting = files.filter((f) => /as Admitted\b/.test(readFileSync(join('src', f), 'utf8')));
    assert.deepEqual(minting, [join('pipeline', 'limit.ts')]);
  });
});
