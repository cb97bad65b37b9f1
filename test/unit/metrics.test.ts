import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AUTH_FAILURE_REASONS, CACHEABLE_METHODS, Metrics, OTHER_TOOL, RESUME_OUTCOMES } from '../../src/ops/metrics.ts';
import type { ReplicaSnapshot, Upstream, UpstreamHealth } from '../../src/upstream/types.ts';

/** The value of one sample in the Prometheus text, or undefined when the series is absent. */
async function sample(m: Metrics, series: string): Promise<number | undefined> {
  const text = await m.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function fakeUpstream(replicas: Partial<ReplicaSnapshot>[], health: UpstreamHealth = 'up'): Upstream {
  const states = replicas.map((r, i) => ({ key: `r${i}`, inflight: 0, streams: 0, load: 0, ejected: false, breaker: 'closed' as const, ...r }));
  return { replicaStates: () => states, health: () => health } as unknown as Upstream;
}

describe('metrics', () => {
  it('starts the bounded series of cache, resume and auth metrics at zero', async () => {
    const m = new Metrics({ defaultMetrics: false });
    for (const method of CACHEABLE_METHODS) {
      assert.equal(await sample(m, `mcp_cache_hits_total{method="${method}"}`), 0);
      assert.equal(await sample(m, `mcp_cache_misses_total{method="${method}"}`), 0);
    }
    for (const outcome of RESUME_OUTCOMES) assert.equal(await sample(m, `mcp_resume_total{outcome="${outcome}"}`), 0);
    for (const reason of AUTH_FAILURE_REASONS) assert.equal(await sample(m, `mcp_auth_failures_total{reason="${reason}"}`), 0);
  });

  it('counts through the small API the features call', async () => {
    const m = new Metrics({ defaultMetrics: false });
    m.cacheLookup('tools/list', true);
    m.cacheLookup('tools/list', true);
    m.cacheLookup('tools/list', false);
    m.resume('evicted');
    m.eventLogAppend(0.0003);
    m.authFailure('expired');
    m.rateLimit('demo', 'principal');
    m.redisError('subscriber');
    assert.equal(await sample(m, 'mcp_cache_hits_total{method="tools/list"}'), 2);
    assert.equal(await sample(m, 'mcp_cache_misses_total{method="tools/list"}'), 1);
    assert.equal(await sample(m, 'mcp_resume_total{outcome="evicted"}'), 1);
    assert.equal(await sample(m, 'mcp_event_log_append_duration_seconds_bucket{le="0.0005"}'), 1);
    assert.equal(await sample(m, 'mcp_event_log_append_duration_seconds_bucket{le="0.00025"}'), 0);
    assert.equal(await sample(m, 'mcp_auth_failures_total{reason="expired"}'), 1);
    assert.equal(await sample(m, 'mcp_rate_limited_total{server="demo",scope="principal"}'), 1);
    assert.equal(await sample(m, 'mcp_redis_errors_total{connection="subscriber"}'), 1);
  });

  it('counts each request by what the client got, its HTTP status apart, and every failure by type', async () => {
    const m = new Metrics({ defaultMetrics: false });
    // The tool-error alert reads these from zero.
    assert.equal(await sample(m, 'mcp_requests_total{method="tools/call",status="success"}'), 0);
    assert.equal(await sample(m, 'mcp_requests_total{method="tools/call",status="error"}'), 0);
    m.request('tools/call', undefined, 200, 0.01);
    m.request('tools/call', 'tool_error', 200, 0.01);
    m.request('tools/call', 'rpc_invalid_params', 200, 0.01);
    m.request('tools/call', 'tool_error', 200, 0.01);
    m.request('response', undefined, 202, 0.001);
    m.request('initialize', 'MCPGW_ERR_UPSTREAM_UNAVAILABLE', 502, 0.2);
    assert.equal(await sample(m, 'mcp_requests_total{method="tools/call",status="success"}'), 1);
    assert.equal(await sample(m, 'mcp_requests_total{method="tools/call",status="error"}'), 3);
    assert.equal(await sample(m, 'mcp_requests_total{method="initialize",status="error"}'), 1);
    assert.equal(await sample(m, 'mcp_http_responses_total{method="tools/call",code="200"}'), 4);
    assert.equal(await sample(m, 'mcp_http_responses_total{method="response",code="202"}'), 1);
    assert.equal(await sample(m, 'mcp_http_responses_total{method="initialize",code="502"}'), 1);
    assert.equal(await sample(m, 'mcp_errors_total{error_type="tool_error",method="tools/call"}'), 2);
    assert.equal(await sample(m, 'mcp_errors_total{error_type="rpc_invalid_params",method="tools/call"}'), 1);
    assert.equal(await sample(m, 'mcp_errors_total{error_type="MCPGW_ERR_UPSTREAM_UNAVAILABLE",method="initialize"}'), 1);
    assert.equal(await sample(m, 'mcp_request_duration_seconds_count{method="tools/call"}'), 4);
  });

  it('counts tool calls per tool only when enabled, capped at the limit', async () => {
    const off = new Metrics({ defaultMetrics: false });
    off.observeTool('demo', 'echo', false, 0.01);
    assert.doesNotMatch(await off.registry.metrics(), /mcp_tool_calls_total/);

    const on = new Metrics({ defaultMetrics: false, toolLabels: true, toolLabelLimit: 2 });
    for (const tool of ['echo', 'add', 'echo', 'junk-1', 'junk-2', 'add']) on.observeTool('demo', tool, false, 0.01);
    assert.equal(await sample(on, 'mcp_tool_calls_total{server="demo",tool="echo",status="success"}'), 2);
    assert.equal(await sample(on, 'mcp_tool_calls_total{server="demo",tool="add",status="success"}'), 2);
    assert.equal(await sample(on, `mcp_tool_calls_total{server="demo",tool="${OTHER_TOOL}",status="success"}`), 2);
    assert.equal(await sample(on, 'mcp_tool_call_duration_seconds_count{server="demo",tool="echo"}'), 2);
    on.observeTool('demo', 'echo', true, 0.01);
    assert.equal(await sample(on, 'mcp_tool_calls_total{server="demo",tool="echo",status="error"}'), 1);
  });

  it('a tool name longer than MCP allows (128) is no label of its own, and takes no place under the cap', async () => {
    const on = new Metrics({ defaultMetrics: false, toolLabels: true, toolLabelLimit: 2 });
    const long = 'x'.repeat(100_000);
    on.observeTool('demo', long, false, 0.01);
    on.observeTool('demo', `${'y'.repeat(128)}z`, false, 0.01);
    on.observeTool('demo', 'echo', false, 0.01);
    on.observeTool('demo', 'y'.repeat(128), false, 0.01);
    const text = await on.registry.metrics();
    assert.ok(!text.includes('x'.repeat(129)) && !text.includes(`${'y'.repeat(128)}z`), 'a long name became a label');
    assert.equal(await sample(on, `mcp_tool_calls_total{server="demo",tool="${OTHER_TOOL}",status="success"}`), 2);
    assert.equal(await sample(on, 'mcp_tool_calls_total{server="demo",tool="echo",status="success"}'), 1);
    assert.equal(await sample(on, `mcp_tool_calls_total{server="demo",tool="${'y'.repeat(128)}",status="success"}`), 1);
  });

  it('reads upstream replicas at scrape time', async () => {
    const m = new Metrics({ defaultMetrics: false });
    const servers = new Map<string, Upstream>([
      ['api', fakeUpstream([{ key: 'http://10.0.0.1/mcp', inflight: 3, streams: 2 }, { key: 'http://10.0.0.2/mcp', ejected: true, breaker: 'open' }])],
      ['files', fakeUpstream([{ key: 'stdio:0', streams: 5, breaker: 'half-open' }], 'at_capacity')],
      ['down', fakeUpstream([{ key: 'http://10.0.0.3/mcp', ejected: true, breaker: 'open' }], 'no_healthy_upstream')],
    ]);
    m.watchUpstreams(servers);
    assert.equal(await sample(m, 'mcp_upstream_inflight{server="api",replica="http://10.0.0.1/mcp"}'), 3);
    assert.equal(await sample(m, 'mcp_upstream_streams{server="api",replica="http://10.0.0.1/mcp"}'), 2);
    assert.equal(await sample(m, 'mcp_upstream_breaker_state{server="api",replica="http://10.0.0.2/mcp"}'), 2);
    assert.equal(await sample(m, 'mcp_upstream_breaker_state{server="files",replica="stdio:0"}'), 1);
    assert.equal(await sample(m, 'mcp_upstream_healthy_replicas{server="api"}'), 1);
    // A server that cannot take a new session (here: stdio at maxProcesses) has none.
    assert.equal(await sample(m, 'mcp_upstream_healthy_replicas{server="files"}'), 0);
    // Per-server health: 1 up, 0 at its cap or without a healthy replica.
    assert.equal(await sample(m, 'mcp_server_up{server="api"}'), 1);
    assert.equal(await sample(m, 'mcp_server_up{server="files"}'), 0);
    assert.equal(await sample(m, 'mcp_server_up{server="down"}'), 0);
  });

  it('reports Redis up only when Redis is configured', async () => {
    const m = new Metrics({ defaultMetrics: false });
    assert.equal(await sample(m, 'mcp_redis_up'), undefined);
    let up = true;
    m.watchRedis(() => up);
    assert.equal(await sample(m, 'mcp_redis_up'), 1);
    up = false;
    assert.equal(await sample(m, 'mcp_redis_up'), 0);
    assert.equal(await sample(m, 'mcp_redis_errors_total{connection="command"}'), 0);
  });
});
