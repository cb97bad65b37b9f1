import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/ops/logger.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { meta, statelessPost } from '../helpers/era.ts';
import { spawnGateway, startGateway } from '../helpers/gateway.ts';
import { connectLegacyClient } from '../helpers/legacy.ts';
import { META_UPSTREAM } from '../helpers/meta-upstream.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp.ts';
import { freePort } from '../helpers/ports.ts';
import { openSession, post, rpcOf, sessionHeaders } from '../helpers/raw.ts';
import { startRedis } from '../helpers/redis.ts';
import { startScriptedUpstream } from '../helpers/scripted-upstream.ts';
import { postSse, progressOf, readSse, resumeSse, slowCount } from '../helpers/sse.ts';
import { startDemoUpstream } from '../helpers/upstream.ts';
import { startRecordingSseUpstream } from '../helpers/recording-sse-upstream.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';
import { until } from '../helpers/streams.ts';

const INTERNAL_KIND = 1;
const SERVER_KIND = 2;
const CLIENT_KIND = 3;

/** A client's span: a fresh trace id and span id, sampled. */
function clientSpan(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

/**
 * The server span of the request named `name` in `traceId`, and its client child of the same
 * name: the call's exchange with the upstream (waited for, bounded). A request may have other
 * children (a translated call opens its upstream session first).
 */
async function requestSpans(receiver: OtlpReceiver, traceId: string, name: string): Promise<{ server: ReceivedSpan; exchange: ReceivedSpan }> {
  const find = () => {
    const server = receiver.spans.find((s) => s.traceId === traceId && s.kind === SERVER_KIND && s.name === name);
    const exchange = server && receiver.spans.find((s) => s.kind === CLIENT_KIND && s.parentSpanId === server.spanId && s.name === name);
    return server && exchange ? { server, exchange } : undefined;
  };
  await until(() => find() !== undefined, `the spans of ${name} in trace ${traceId}`, 10_000);
  return find()!;
}

/** The traceparent header the upstream received with the `tools/call` of this trace. */
function upstreamTraceparent(upstream: RecordingUpstream, traceId: string): string | undefined {
  const r = upstream.requests.find((x) => x.body.includes('"tools/call"') && String(x.headers.traceparent ?? '').includes(traceId));
  return r?.headers.traceparent as string | undefined;
}

/** The gateway's log lines, parsed, as it writes them. */
function logLines(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

describe('traces: OpenTelemetry spans of MCP requests, exported over OTLP/HTTP', () => {
  let receiver: OtlpReceiver;
  let upstream: RecordingUpstream;

  before(async () => {
    receiver = await startOtlpReceiver();
    upstream = await startRecordingUpstream({ json: true });
  });
  after(async () => {
    await upstream.close();
    await receiver.close();
  });

  it('session era (OTEL_* environment, batched export): the server span continues the client traceparent, the upstream exchange is its child and the upstream gets its traceparent; log lines carry the ids', async () => {
    const { lines, stream } = logLines();
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_SERVICE_NAME: 'gateway-under-test', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test' };
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: upstream.url }] } } }, { env, logger: createLogger('debug', stream) });
    const caller = clientSpan();
    const client = await connectClient(`${gw.url}/mcp/rec`, { headers: { traceparent: caller.traceparent, tracestate: 'vendor=abc' } });
    try {
      assert.equal(textOf(await client.client.callTool({ name: 'echo', arguments: { text: 'traced' } })), 'traced');
      const { server, exchange } = await requestSpans(receiver, caller.traceId, 'tools/call echo');
      assert.equal(server.parentSpanId, caller.spanId, 'the server span is a child of the caller span');
      assert.equal(server.attributes['mcp.method.name'], 'tools/call');
      assert.equal(server.attributes['gen_ai.tool.name'], 'echo');
      assert.equal(server.attributes['gen_ai.operation.name'], 'execute_tool');
      assert.equal(server.attributes['mcp.protocol.version'], '2025-11-25');
      assert.equal(server.attributes['mcpgw.server'], 'rec');
      assert.equal(server.attributes['mcpgw.outcome'], 'success');
      assert.equal(typeof server.attributes['jsonrpc.request.id'], 'string');
      // The session id is a bearer credential: a span holds a hash of it, never the id.
      const sid = client.transport.sessionId!;
      assert.match(String(server.attributes['mcp.session.id']), /^[0-9a-f]{32}$/);
      assert.ok(!JSON.stringify(receiver.spans).includes(sid), 'the session id is in no span');
      assert.equal(server.resource['service.name'], 'gateway-under-test');
      assert.equal(server.resource['deployment.environment'], 'test');
      assert.equal(exchange.attributes['mcpgw.replica'], upstream.url);
      assert.equal(exchange.attributes['http.response.status_code'], 200);
      const sent = upstreamTraceparent(upstream, caller.traceId);
      assert.equal(sent, `00-${caller.traceId}-${exchange.spanId}-01`, 'the upstream continues the exchange span');
      const request = upstream.requests.find((r) => r.headers.traceparent === sent)!;
      assert.match(String(request.headers.tracestate), /vendor=abc/, 'the caller tracestate goes on');
      await until(() => lines.some((l) => l.msg === 'request' && l.method === 'tools/call'), 'the request log line');
      const line = lines.find((l) => l.msg === 'request' && l.method === 'tools/call')!;
      assert.equal(line.trace_id, caller.traceId);
      assert.equal(line.span_id, server.spanId);
    } finally {
      await client.close();
      await gw.close();
    }
  });

  it('session era, stdio upstream (telemetry section): the child process gets the exchange span as params._meta.traceparent', async () => {
    const gw = await startGateway({
      servers: { kid: { upstreams: [{ command: process.execPath, args: [META_UPSTREAM] }] } },
      telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 },
    });
    const caller = clientSpan();
    const client = await connectClient(`${gw.url}/mcp/kid`, { headers: { traceparent: caller.traceparent } });
    try {
      const seen = JSON.parse(textOf(await client.client.callTool({ name: 'meta', arguments: {} }))) as Record<string, unknown>;
      const { server, exchange } = await requestSpans(receiver, caller.traceId, 'tools/call meta');
      assert.equal(server.parentSpanId, caller.spanId);
      assert.equal(exchange.attributes['network.transport'], 'pipe');
      assert.equal(exchange.attributes['mcpgw.replica'], 'stdio:0');
      assert.equal(seen.traceparent, `00-${caller.traceId}-${exchange.spanId}-01`);
    } finally {
      await client.close();
      await gw.close();
    }
  });

  it('session era, 2024-11-05 SSE upstream: the message POSTed upstream carries the exchange span in params._meta', async () => {
    const old = await startRecordingSseUpstream();
    const gw = await startGateway({ servers: { old: { upstreams: [{ url: old.url, transport: 'sse' }] } }, telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 } });
    const caller = clientSpan();
    const client = await connectClient(`${gw.url}/mcp/old`, { headers: { traceparent: caller.traceparent } });
    try {
      assert.match(textOf(await client.client.callTool({ name: 'echo', arguments: { text: 'sse' } })), /sse/);
      const { exchange } = await requestSpans(receiver, caller.traceId, 'tools/call echo');
      const posted = old.bodies.map((b) => JSON.parse(b) as { method?: string; params?: { _meta?: Record<string, unknown> } }).find((m) => m.method === 'tools/call');
      assert.equal(posted?.params?._meta?.traceparent, `00-${caller.traceId}-${exchange.spanId}-01`);
    } finally {
      await client.close();
      await gw.close();
      await old.close();
    }
  });

  it('2026-07-28 (translated for a session-era upstream): params._meta.traceparent is the parent (SEP-414), the HTTP traceparent a link', async () => {
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: upstream.url }] } }, telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 } });
    const inMeta = clientSpan();
    const inHeader = clientSpan();
    try {
      const res = await statelessPost(`${gw.url}/mcp/rec`, 'tools/call', { name: 'echo', arguments: { text: 'v2026' }, _meta: meta({}, { traceparent: inMeta.traceparent }) }, { headers: { traceparent: inHeader.traceparent } });
      assert.equal(res.status, 200, res.text);
      assert.equal(textOf(rpcOf(res).result), 'v2026');
      const { server, exchange } = await requestSpans(receiver, inMeta.traceId, 'tools/call echo');
      assert.equal(server.parentSpanId, inMeta.spanId);
      assert.equal(server.attributes['mcp.protocol.version'], '2026-07-28');
      assert.deepEqual(
        server.links.map((l) => [l.traceId, l.spanId]),
        [[inHeader.traceId, inHeader.spanId]],
      );
      assert.equal(upstreamTraceparent(upstream, inMeta.traceId), `00-${inMeta.traceId}-${exchange.spanId}-01`);
    } finally {
      await gw.close();
    }
  });

  it('a caller trace context with characters no header may hold (baggage metadata in params._meta: CR LF, beyond Latin-1) is ignored: the call goes upstream and succeeds', async () => {
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: upstream.url }] } }, telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 } });
    const caller = clientSpan();
    try {
      const baggage = 'user=a;note\r\nx-injected: 1,lang=\u4e00';
      const res = await statelessPost(`${gw.url}/mcp/rec`, 'tools/call', { name: 'echo', arguments: { text: 'bad-baggage' }, _meta: meta({}, { traceparent: caller.traceparent, baggage }) });
      assert.equal(res.status, 200, res.text);
      assert.equal(textOf(rpcOf(res).result), 'bad-baggage');
      const call = upstream.requests.find((r) => r.body.includes('"bad-baggage"'));
      assert.ok(call);
      assert.equal(call.headers['x-injected'], undefined);
      assert.equal(call.headers.baggage, undefined);
    } finally {
      await gw.close();
    }
  });

  it('2024-11-05 HTTP+SSE: the POST of the call is the server span, its upstream exchange a child', async () => {
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: upstream.url }] } }, telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 } });
    const caller = clientSpan();
    const legacy = await connectLegacyClient(`${gw.url}/mcp/rec/sse`, { headers: { traceparent: caller.traceparent } });
    try {
      assert.equal(textOf(await legacy.client.callTool({ name: 'echo', arguments: { text: 'old' } })), 'old');
      const { server, exchange } = await requestSpans(receiver, caller.traceId, 'tools/call echo');
      assert.equal(server.parentSpanId, caller.spanId);
      assert.equal(upstreamTraceparent(upstream, caller.traceId), `00-${caller.traceId}-${exchange.spanId}-01`);
    } finally {
      await legacy.close();
      await gw.close();
    }
  });

  it('Redis round trips while serving a request (here: its rate limit) are its children, named by the command alone', async () => {
    const redis = await startRedis();
    const gw = await startGateway({
      redis: { url: redis.url },
      servers: { rec: { upstreams: [{ url: upstream.url }], rateLimit: { principal: { requests: 1000 } } } },
      telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 },
    });
    const caller = clientSpan();
    const client = await connectClient(`${gw.url}/mcp/rec`, { headers: { traceparent: caller.traceparent } });
    try {
      await client.client.callTool({ name: 'echo', arguments: { text: 'redis' } });
      const { server } = await requestSpans(receiver, caller.traceId, 'tools/call echo');
      const children = () => receiver.spans.filter((s) => s.parentSpanId === server.spanId && s.attributes['db.system.name'] === 'redis');
      await until(() => children().some((c) => c.name === 'EVALSHA' || c.name === 'EVAL'), 'the rate limit round trip');
      for (const span of children()) {
        assert.equal(span.kind, CLIENT_KIND);
        assert.equal(span.name, span.attributes['db.operation.name']);
        assert.match(span.name, /^[A-Z]+$/);
      }
      // No key reaches a span: they hold session ids and principals.
      assert.ok(!JSON.stringify(children()).includes('mcpgw:'));
    } finally {
      await client.close();
      await gw.close();
      await redis.stop();
    }
  });

  it('a retried read: each try is its own upstream CLIENT span, the resends numbered by http.request.resend_count', async () => {
    const scripted = await startScriptedUpstream();
    const gw = await startGateway({ servers: { api: { upstreams: [{ url: scripted.url }], maxFails: 0, retry: { backoff: '10ms' } } }, telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 } });
    try {
      const url = `${gw.url}/mcp/api`;
      const sid = await openSession(url);
      scripted.fail('resources/read res://doc', 2, 'status');
      const caller = clientSpan();
      const res = await post(url, { jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'res://doc' } }, { ...sessionHeaders(sid), traceparent: caller.traceparent });
      assert.equal(res.status, 200, res.text);
      const server = () => receiver.spans.find((s) => s.traceId === caller.traceId && s.kind === SERVER_KIND);
      const tries = () => receiver.spans.filter((s) => s.kind === CLIENT_KIND && s.parentSpanId === server()?.spanId && s.attributes['mcpgw.replica'] === scripted.url);
      await until(() => tries().length === 3, 'three upstream spans');
      const byStart = tries().sort((a, b) => Number(BigInt(a.startTimeUnixNano) - BigInt(b.startTimeUnixNano)));
      assert.deepEqual(
        byStart.map((s) => [s.attributes['http.request.resend_count'], s.attributes['http.response.status_code']]),
        [
          [undefined, 503],
          [1, 503],
          [2, 200],
        ],
      );
    } finally {
      await gw.close();
      await scripted.close();
    }
  });

  it('a relayed stream: its event-log writes (Redis) are CLIENT children of its request, one BATCH span per pipeline, not a span per command; a resume on the same replica has a replay span', async () => {
    const [redis, demo] = await Promise.all([startRedis(), startDemoUpstream('u')]);
    const gw = await startGateway({ redis: { url: redis.url }, servers: { api: { upstreams: [{ url: demo.url }] } }, telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 } });
    try {
      const url = `${gw.url}/mcp/api`;
      const headers = { 'mcp-session-id': await openSession(url), 'mcp-protocol-version': '2025-11-25' };
      const caller = clientSpan();
      const { res, abort } = await postSse(url, slowCount(7, 6, 40), { ...headers, traceparent: caller.traceparent });
      const first = await readSse(res, (_e, all) => progressOf(all).length >= 2, abort);
      const resumer = clientSpan();
      await sleep(150); // the upstream goes on; the gateway logs it
      const again = await resumeSse(url, first.at(-1)!.id!, { ...headers, traceparent: resumer.traceparent });
      assert.equal(again.res.status, 200);
      await readSse(again.res, (e) => e.message?.id === 7);

      const server = () => receiver.spans.find((s) => s.traceId === caller.traceId && s.kind === SERVER_KIND && s.name === 'tools/call slow_count');
      const writes = () => receiver.spans.filter((s) => s.parentSpanId === server()?.spanId && s.attributes['db.system.name'] === 'redis');
      // Progress comes 40 ms apart: its appends are pipelines of their own; the server span ends with the stream.
      await until(() => server() !== undefined && writes().length >= 3, 'the stream appends as children of the call');
      for (const w of writes()) {
        assert.equal(w.kind, CLIENT_KIND);
        assert.equal(w.name, 'BATCH', 'one span per pipeline, none per command (XADD, PEXPIRE)');
        assert.equal(w.attributes['db.operation.name'], 'BATCH');
        assert.ok(Number(w.attributes['db.operation.batch.size']) >= 1);
        assert.ok(Number(w.attributes['mcpgw.event_log.events']) >= 1);
        assert.equal(w.attributes['mcpgw.event_log.streams'], 1);
      }
      const events = writes().reduce((n, w) => n + Number(w.attributes['mcpgw.event_log.events']), 0);
      assert.ok(events >= 8, `every event of the stream is in a write span (start, 6 progress, result, end): ${events}`);

      const resumed = () => receiver.spans.find((s) => s.traceId === resumer.traceId && s.kind === SERVER_KIND);
      const replay = () => receiver.spans.find((s) => s.parentSpanId === resumed()?.spanId && s.name === 'replay');
      await until(() => replay() !== undefined, 'the replay span of the resumption');
      assert.equal(resumed()!.attributes['mcpgw.resumed'], true);
      assert.equal(replay()!.kind, INTERNAL_KIND);
      assert.equal(replay()!.attributes['mcpgw.resume.outcome'], 'hit');
      assert.ok(Number(replay()!.attributes['mcpgw.replay.entries']) >= 1, 'what the client missed was replayed');
    } finally {
      await gw.close();
      await Promise.all([demo.stop(), redis.stop()]);
    }
  });

  it('a 2024-11-05 session stream: the event-log writes of a call\'s answer are one BATCH span per round trip, a CLIENT child of the POST, not a span per command', async () => {
    const redis = await startRedis();
    const gw = await startGateway({ redis: { url: redis.url }, servers: { rec: { upstreams: [{ url: upstream.url }] } }, telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 } });
    const caller = clientSpan();
    let legacy: Awaited<ReturnType<typeof connectLegacyClient>> | undefined;
    try {
      // The 2024-11-05 transport needs the event log: Redis connected first.
      await until(async () => (await fetch(`${gw.url}/readyz`)).status === 200, 'Redis connected');
      legacy = await connectLegacyClient(`${gw.url}/mcp/rec/sse`, { headers: { traceparent: caller.traceparent } });
      assert.equal(textOf(await legacy.client.callTool({ name: 'echo', arguments: { text: 'logged' } })), 'logged');
      const { server } = await requestSpans(receiver, caller.traceId, 'tools/call echo');
      const redisChildren = () => receiver.spans.filter((s) => s.parentSpanId === server.spanId && s.attributes['db.system.name'] === 'redis');
      const writes = () => redisChildren().filter((s) => s.name === 'BATCH');
      await until(() => writes().length >= 1, 'the answer\'s write to the session stream');
      for (const w of writes()) {
        assert.equal(w.kind, CLIENT_KIND);
        assert.equal(w.attributes['db.operation.name'], 'BATCH');
        assert.equal(w.attributes['db.operation.batch.size'], 1, 'one script appends the batch');
        assert.ok(Number(w.attributes['mcpgw.event_log.events']) >= 1);
        assert.equal(w.attributes['mcpgw.event_log.streams'], 1);
      }
      assert.ok(!redisChildren().some((s) => s.name === 'EVAL' || s.name === 'EVALSHA'), `no span per command: ${redisChildren().map((s) => s.name).join(', ')}`);
    } finally {
      await legacy?.close();
      await gw.close();
      await redis.stop();
    }
  });

  it('a resumed stream whose replica died: the replay, the log reads and the takeover\'s upstream read are children of the resuming GET', async () => {
    const [redis, demo] = await Promise.all([startRedis(), startDemoUpstream('u')]);
    const doc = { redis: { url: redis.url }, servers: { api: { upstreams: [{ url: demo.url }] } } };
    const a = await spawnGateway(doc);
    const b = await startGateway({ ...doc, telemetry: { endpoint: receiver.url, protocol: 'http/json', exportDelay: 0 } });
    try {
      const headers = { 'mcp-session-id': await openSession(`${a.url}/mcp/api`), 'mcp-protocol-version': '2025-11-25' };
      const { res, abort } = await postSse(`${a.url}/mcp/api`, slowCount(42, 40, 60), headers);
      const first = await readSse(res, (_e, all) => progressOf(all).length >= 3, abort);
      await a.child.kill('SIGKILL');
      const caller = clientSpan();
      const again = await resumeSse(`${b.url}/mcp/api`, first.at(-1)!.id!, { ...headers, traceparent: caller.traceparent });
      assert.equal(again.res.status, 200);
      const rest = await readSse(again.res, (e) => e.message?.id === 42);
      assert.equal(progressOf(rest).at(-1), 40);

      const server = () => receiver.spans.find((s) => s.traceId === caller.traceId && s.kind === SERVER_KIND);
      const children = () => receiver.spans.filter((s) => s.parentSpanId === server()?.spanId);
      const reopen = () => children().find((s) => s.kind === CLIENT_KIND && s.attributes['mcpgw.replica'] === demo.url);
      await until(() => reopen() !== undefined && children().some((s) => s.name === 'BATCH'), 'the takeover spans');
      assert.equal(reopen()!.attributes['http.request.method'], 'GET', 'the upstream stream resumed (GET with its Last-Event-ID)');
      assert.ok(children().some((s) => s.name === 'replay' && s.kind === INTERNAL_KIND), 'the replay from the log');
      assert.ok(children().some((s) => s.attributes['db.system.name'] === 'redis' && s.name !== 'BATCH'), 'the log reads and the claim');
    } finally {
      await b.close();
      await Promise.all([demo.stop(), redis.stop()]);
    }
  });

  it('the default protocol (http/protobuf) exports too', async () => {
    const proto = await startOtlpReceiver();
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: upstream.url }] } }, telemetry: { endpoint: proto.url, exportDelay: 0 } });
    const client = await connectClient(`${gw.url}/mcp/rec`);
    try {
      await client.client.callTool({ name: 'echo', arguments: { text: 'protobuf' } });
      await until(() => proto.contentTypes.length > 0, 'a protobuf export');
      assert.equal(proto.contentTypes[0], 'application/x-protobuf');
    } finally {
      await client.close();
      await gw.close();
      await proto.close();
    }
  });

  it('a collector that cannot be reached is logged (spans dropped), and requests go on', async () => {
    const { lines, stream } = logLines();
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: upstream.url }] } }, telemetry: { endpoint: `http://127.0.0.1:${await freePort()}`, protocol: 'http/json', exportDelay: '10ms' } }, { logger: createLogger('info', stream) });
    const client = await connectClient(`${gw.url}/mcp/rec`);
    try {
      assert.ok(lines.some((l) => l.msg === 'traces on' && l.exporter === 'otlp'));
      assert.equal(textOf(await client.client.callTool({ name: 'echo', arguments: { text: 'still served' } })), 'still served');
      await until(() => lines.some((l) => l.msg === 'traces could not be exported (spans dropped)' && l.level === 40), 'the export failure line', 30_000);
    } finally {
      await client.close();
      await gw.close();
    }
  });

  it('sampler always_off: a sampled caller traceparent exports nothing', async () => {
    const quiet = await startOtlpReceiver();
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: upstream.url }] } } }, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: quiet.url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_TRACES_SAMPLER: 'always_off', OTEL_BSP_SCHEDULE_DELAY: '10' } });
    const caller = clientSpan();
    const client = await connectClient(`${gw.url}/mcp/rec`, { headers: { traceparent: caller.traceparent } });
    try {
      await client.client.callTool({ name: 'echo', arguments: { text: 'unsampled' } });
      // The upstream is told not to sample either: the context goes on with the flag off.
      assert.match(upstreamTraceparent(upstream, caller.traceId) ?? '', new RegExp(`^00-${caller.traceId}-[0-9a-f]{16}-00$`));
    } finally {
      await client.close();
      // Closing flushes whatever was queued.
      await gw.close();
      await quiet.close();
    }
    assert.equal(quiet.spans.length, 0);
  });

  it('off (OTEL_TRACES_EXPORTER=none, though an endpoint is set): no tracing, no export, no traceparent to the upstream', async () => {
    const quiet = await startOtlpReceiver();
    const gw = await startGateway({ servers: { rec: { upstreams: [{ url: upstream.url }] } } }, { env: { OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: quiet.url, OTEL_BSP_SCHEDULE_DELAY: '10' } });
    assert.equal(gw.tracing, undefined, 'no tracer, no exporter');
    const caller = clientSpan();
    const client = await connectClient(`${gw.url}/mcp/rec`, { headers: { traceparent: caller.traceparent } });
    try {
      await client.client.callTool({ name: 'echo', arguments: { text: 'untraced' } });
      const call = upstream.requests.find((r) => r.body.includes('"untraced"'));
      assert.ok(call);
      assert.equal(call.headers.traceparent, undefined, 'the client header is not passed through');
    } finally {
      await client.close();
      await gw.close();
      await quiet.close();
    }
    assert.equal(quiet.exports, 0);
  });
});
