import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { meta, startEraServer, statelessHeaders, statelessPost, type EraServer } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { initializeLegacy, LegacyStream, postMessage } from '../helpers/legacy.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { until } from '../helpers/streams.ts';
import { startToolErrorUpstream, type ToolErrorUpstream } from '../helpers/tool-error-upstream.ts';

/**
 * Requests are accounted by what the client got, on every front door: a tool that answers
 * `isError: true` and a call of an unknown tool (a JSON-RPC error) are errors though the HTTP
 * status is 200 (or 202 on the 2024-11-05 door), in mcp_requests_total{status}, in
 * mcp_errors_total{error_type} and in the audit line's outcome; successes count as such.
 */

const call = (id: number | string, name: string, args: Record<string, unknown> = {}) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

/** Every series of the accounting counters, as `name{labels}` → value. */
async function snapshot(gw: Gateway): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of ['mcp_requests_total', 'mcp_errors_total', 'mcp_http_responses_total']) {
    const metric = gw.metrics.registry.getSingleMetric(name);
    for (const v of metric ? (await metric.get()).values : []) out.set(`${name}{${Object.entries(v.labels).map(([k, x]) => `${k}="${x}"`).join(',')}}`, v.value);
  }
  return out;
}

/** What changed since `before`, non-zero series only. */
async function changes(gw: Gateway, before: Map<string, number>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [k, v] of await snapshot(gw)) if (v !== (before.get(k) ?? 0)) out[k] = v - (before.get(k) ?? 0);
  return out;
}

/** Runs `act`, then waits until the counters moved by exactly `want` (asserting with a diff if they do not). */
async function expectCounted(gw: Gateway, act: () => Promise<void>, want: Record<string, number>): Promise<void> {
  const before = await snapshot(gw);
  await act();
  const sorted = (o: Record<string, number>) => JSON.stringify(Object.entries(o).sort());
  await until(async () => sorted(await changes(gw, before)) === sorted(want), 'the counters to settle').catch(() => {});
  assert.deepEqual(await changes(gw, before), want);
}

const TOOL_CALLS = (ok: number, error: number) => ({
  ...(ok ? { 'mcp_requests_total{method="tools/call",status="success"}': ok } : {}),
  ...(error ? { 'mcp_requests_total{method="tools/call",status="error"}': error } : {}),
});

describe('accounting by what the client got', () => {
  let jsonUp: ToolErrorUpstream;
  let sseUp: ToolErrorUpstream;
  let era: EraServer;
  let gw: Gateway;
  let dir: string;
  let auditFile: string;

  before(async () => {
    [jsonUp, sseUp, era] = await Promise.all([startToolErrorUpstream({ json: true }), startToolErrorUpstream(), startEraServer('stateless')]);
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-accounting-'));
    auditFile = join(dir, 'audit.log');
    gw = await startGateway({
      servers: {
        json: { upstreams: [{ url: jsonUp.url }] },
        sse: { upstreams: [{ url: sseUp.url }], timeout: { idle: '600ms', max: '20s' } },
        modern: { upstreams: [{ url: era.url }] },
        limited: { upstreams: [{ url: jsonUp.url }], rateLimit: { tools: { ok: { requests: 1, per: '1m' } } } },
      },
      audit: { enabled: true, destination: auditFile },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([jsonUp?.close(), sseUp?.close(), era?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The audit lines of these request ids (waiting for them to be written). */
  async function auditOf(...ids: string[]): Promise<Record<string, Record<string, unknown>>> {
    const out: Record<string, Record<string, unknown>> = {};
    await until(() => {
      gw.audit!.flush();
      let text = '';
      try {
        text = readFileSync(auditFile, 'utf8');
      } catch {
        return false; // not written yet
      }
      for (const line of text.split('\n').filter(Boolean)) {
        const l = JSON.parse(line) as Record<string, unknown>;
        if (ids.includes(l.requestId as string)) out[l.requestId as string] = l;
      }
      return ids.every((id) => out[id]);
    }, `audit lines ${ids.join(', ')}`);
    return out;
  }

  const assertAudit = (line: Record<string, unknown> | undefined, outcome: string, error: string | null, status: number) => {
    assert.ok(line);
    assert.deepEqual({ outcome: line.outcome, error: line.error, status: line.status }, { outcome, error, status });
  };

  for (const [door, server, accept] of [
    ['JSON answers passed through', 'json', 'application/json, text/event-stream'],
    ['SSE answers relayed through the event log (a quick one sent as JSON)', 'sse', 'application/json, text/event-stream'],
    ['SSE answers relayed through the event log, read as SSE', 'sse', 'text/event-stream'],
  ] as const) {
    it(`the session door, ${door}: isError and unknown tools count as errors, successes as successes`, async () => {
      const url = `${gw.url}/mcp/${server}`;
      const sid = await openSession(url);
      const tag = `${server}-${accept.length}`;
      const headers = (tool: string) => ({ ...sessionHeaders(sid), accept, 'x-request-id': `s-${tag}-${tool}` });
      await expectCounted(
        gw,
        async () => {
          assert.equal((await post(url, call(1, 'ok'), headers('ok'))).status, 200);
          const failed = await post(url, call(2, 'fail'), headers('fail'));
          assert.equal(failed.status, 200);
          assert.equal((rpcOf(failed).result as { isError?: boolean }).isError, true);
          const unknown = await post(url, call(3, 'nope'), headers('nope'));
          assert.equal(unknown.status, 200);
          assert.equal(rpcOf(unknown).error?.code, -32602);
        },
        {
          ...TOOL_CALLS(1, 2),
          'mcp_errors_total{error_type="tool_error",method="tools/call"}': 1,
          'mcp_errors_total{error_type="rpc_invalid_params",method="tools/call"}': 1,
          'mcp_http_responses_total{method="tools/call",code="200"}': 3,
        },
      );
      const audit = await auditOf(`s-${tag}-ok`, `s-${tag}-fail`, `s-${tag}-nope`);
      assertAudit(audit[`s-${tag}-ok`], 'ok', null, 200);
      assertAudit(audit[`s-${tag}-fail`], 'error', 'tool_error', 200);
      assertAudit(audit[`s-${tag}-nope`], 'error', 'rpc_invalid_params', 200);
    });
  }

  it('the session door: a time limit that cuts a relayed answer is an error of the gateway code', async () => {
    const url = `${gw.url}/mcp/sse`;
    const sid = await openSession(url);
    await expectCounted(
      gw,
      async () => {
        const res = await post(url, call(7, 'slow', { ms: 5_000 }), { ...sessionHeaders(sid), accept: 'text/event-stream', 'x-request-id': 's-timeout' });
        assert.equal(res.status, 200);
        assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_UPSTREAM_TIMEOUT');
      },
      { ...TOOL_CALLS(0, 1), 'mcp_errors_total{error_type="MCPGW_ERR_UPSTREAM_TIMEOUT",method="tools/call"}': 1, 'mcp_http_responses_total{method="tools/call",code="200"}': 1 },
    );
    assertAudit((await auditOf('s-timeout'))['s-timeout'], 'error', 'MCPGW_ERR_UPSTREAM_TIMEOUT', 200);
  });

  it('the session door: a call refused by a rate limit is an error of the gateway code', async () => {
    const url = `${gw.url}/mcp/limited`;
    const sid = await openSession(url);
    await expectCounted(
      gw,
      async () => {
        assert.equal((await post(url, call(1, 'ok'), sessionHeaders(sid))).status, 200);
        assert.equal((await post(url, call(2, 'ok'), { ...sessionHeaders(sid), 'x-request-id': 's-limited' })).status, 429);
      },
      {
        ...TOOL_CALLS(1, 1),
        'mcp_errors_total{error_type="MCPGW_ERR_RATE_LIMITED",method="tools/call"}': 1,
        'mcp_http_responses_total{method="tools/call",code="200"}': 1,
        'mcp_http_responses_total{method="tools/call",code="429"}': 1,
      },
    );
    assertAudit((await auditOf('s-limited'))['s-limited'], 'error', 'MCPGW_ERR_RATE_LIMITED', 429);
  });

  it('the session door: a call the client cancels (notifications/cancelled) is an error; the notification a success', async () => {
    const url = `${gw.url}/mcp/sse`;
    const sid = await openSession(url);
    await expectCounted(
      gw,
      async () => {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...sessionHeaders(sid), 'x-request-id': 's-cancelled' },
          body: JSON.stringify(call('c1', 'slow', { ms: 5_000 })),
        });
        assert.equal(res.status, 200);
        const cancel = await post(url, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'c1', reason: 'no longer needed' } }, sessionHeaders(sid));
        assert.equal(cancel.status, 202);
        await res.text();
      },
      {
        ...TOOL_CALLS(0, 1),
        'mcp_errors_total{error_type="cancelled",method="tools/call"}': 1,
        'mcp_http_responses_total{method="tools/call",code="200"}': 1,
        'mcp_requests_total{method="notifications/cancelled",status="success"}': 1,
        'mcp_http_responses_total{method="notifications/cancelled",code="202"}': 1,
      },
    );
    assertAudit((await auditOf('s-cancelled'))['s-cancelled'], 'error', 'cancelled', 200);
  });

  for (const [what, server, names, progress] of [
    ['translated for a session-era upstream (JSON answers)', 'sse', { ok: 'ok', fail: 'fail' }, false],
    ['translated for a session-era upstream (SSE answers, relayed)', 'sse', { ok: 'ok', fail: 'fail' }, true],
    ['forwarded to a 2026-07-28 upstream', 'modern', { ok: 'test_simple_text', fail: 'test_error_handling' }, false],
  ] as const) {
    it(`the 2026-07-28 door, ${what}: isError and unknown tools count as errors`, async () => {
      const url = `${gw.url}/mcp/${server}`;
      const id = (tool: string) => `m-${server}-${progress}-${tool}`;
      const callOf = async (tool: string, name: string) =>
        statelessPost(url, 'tools/call', { name, arguments: {}, _meta: { ...meta(), ...(progress ? { progressToken: tool } : {}) } }, { headers: { 'x-request-id': id(tool) } });
      const before = await snapshot(gw);
      const ok = await callOf('ok', names.ok);
      assert.equal(ok.status, 200, ok.text);
      assert.equal(rpcOf(ok).error, undefined);
      const failed = await callOf('fail', names.fail);
      assert.equal((rpcOf(failed).result as { isError?: boolean }).isError, true, failed.text);
      const unknown = await callOf('nope', 'nope');
      assert.equal(rpcOf(unknown).error?.code, -32602, unknown.text);
      const want = { ...TOOL_CALLS(1, 2), 'mcp_errors_total{error_type="tool_error",method="tools/call"}': 1, 'mcp_errors_total{error_type="rpc_invalid_params",method="tools/call"}': 1 };
      await until(async () => {
        const now = await changes(gw, before);
        return Object.entries(want).every(([k, v]) => now[k] === v);
      }, 'the counters to settle').catch(() => {});
      const now = await changes(gw, before);
      assert.deepEqual(Object.fromEntries(Object.entries(now).filter(([k]) => !k.startsWith('mcp_http_responses_total'))), want);
      // The HTTP statuses sent are counted apart, whatever they were.
      const http = Object.entries(now).filter(([k]) => k.startsWith('mcp_http_responses_total{method="tools/call"'));
      assert.equal(http.reduce((n, [, v]) => n + v, 0), 3);
      const audit = await auditOf(id('ok'), id('fail'), id('nope'));
      assert.equal(audit[id('ok')]!.outcome, 'ok');
      assert.deepEqual([audit[id('fail')]!.outcome, audit[id('fail')]!.error], ['error', 'tool_error']);
      assert.deepEqual([audit[id('nope')]!.outcome, audit[id('nope')]!.error], ['error', 'rpc_invalid_params']);
    });
  }

  it('the 2026-07-28 door: a request the client abandons (closing the response) is a cancellation', async () => {
    const url = `${gw.url}/mcp/sse`;
    await expectCounted(
      gw,
      async () => {
        const abort = new AbortController();
        // A progress notification first: the answer is a relayed stream when the client leaves.
        const params = { name: 'slow', arguments: { ms: 5_000 }, _meta: { ...meta(), progressToken: 'p' } };
        const pending = statelessPost(url, 'tools/call', params, { signal: abort.signal, headers: { 'x-request-id': 'm-abandoned' } }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 200));
        abort.abort();
        await pending;
      },
      { ...TOOL_CALLS(0, 1), 'mcp_errors_total{error_type="cancelled",method="tools/call"}': 1, 'mcp_http_responses_total{method="tools/call",code="200"}': 1 },
    );
    assert.equal((await auditOf('m-abandoned'))['m-abandoned']!.error, 'cancelled');
  });

  it('the 2026-07-28 door: a subscriptions/listen stream the client closes is no failure', async () => {
    const params = { notifications: { toolsListChanged: true }, _meta: meta() };
    await expectCounted(
      gw,
      async () => {
        const abort = new AbortController();
        const res = await fetch(`${gw.url}/mcp/modern`, {
          method: 'POST',
          signal: abort.signal,
          headers: { ...statelessHeaders('subscriptions/listen', params), 'x-request-id': 'm-listen' },
          body: JSON.stringify({ jsonrpc: '2.0', id: 'sub', method: 'subscriptions/listen', params }),
        });
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
        await new Promise((r) => setTimeout(r, 200));
        // The only way a listen ends: the client closes it.
        abort.abort();
      },
      { 'mcp_requests_total{method="subscriptions/listen",status="success"}': 1, 'mcp_http_responses_total{method="subscriptions/listen",code="200"}': 1 },
    );
    assertAudit((await auditOf('m-listen'))['m-listen'], 'ok', null, 200);
  });

  for (const [what, server] of [
    ['a JSON upstream answer', 'json'],
    ['an SSE upstream answer, accounted once it has passed', 'sse'],
  ] as const) {
    it(`the 2024-11-05 door, ${what}: the 202 POST counts by the answer it fed into the session stream`, async () => {
      const sseUrl = `${gw.url}/mcp/${server}/sse`;
      const stream = await LegacyStream.open(sseUrl);
      try {
        await stream.until((events) => events.some((e) => e.event === 'endpoint'));
        const endpoint = stream.endpoint(sseUrl);
        await initializeLegacy(stream, endpoint);
        const id = (tool: string) => `l-${server}-${tool}`;
        await expectCounted(
          gw,
          async () => {
            for (const [n, tool] of ['ok', 'fail', 'nope'].entries()) {
              assert.equal((await postMessage(endpoint, call(`l${n}`, tool), { 'x-request-id': id(tool) })).status, 202);
            }
            const events = await stream.until((e) => ['l0', 'l1', 'l2'].every((x) => e.some((m) => m.message?.id === x)));
            assert.equal((events.find((e) => e.message?.id === 'l1')!.message!.result as { isError?: boolean }).isError, true);
            assert.equal(events.find((e) => e.message?.id === 'l2')!.message!.error?.code, -32602);
          },
          {
            ...TOOL_CALLS(1, 2),
            'mcp_errors_total{error_type="tool_error",method="tools/call"}': 1,
            'mcp_errors_total{error_type="rpc_invalid_params",method="tools/call"}': 1,
            'mcp_http_responses_total{method="tools/call",code="202"}': 3,
          },
        );
        const audit = await auditOf(id('ok'), id('fail'), id('nope'));
        assertAudit(audit[id('ok')], 'ok', null, 202);
        assertAudit(audit[id('fail')], 'error', 'tool_error', 202);
        assertAudit(audit[id('nope')], 'error', 'rpc_invalid_params', 202);
      } finally {
        stream.drop();
      }
    });
  }
});
