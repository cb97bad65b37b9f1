import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';
import { createContextKey, defaultTextMapSetter, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Link, type Span, type TextMapGetter, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, ExportResultCode, W3CBaggagePropagator, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ConsoleSpanExporter, ParentBasedSampler, SimpleSpanProcessor, TraceIdRatioBasedSampler, TracerProvider, type ReadableSpan, type Sampler, type SpanExporter } from '@opentelemetry/sdk-trace';
import { ATTR_CLIENT_ADDRESS, ATTR_DB_OPERATION_NAME, ATTR_DB_SYSTEM_NAME, ATTR_ERROR_TYPE, ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_RESEND_COUNT, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_NETWORK_PROTOCOL_NAME, ATTR_NETWORK_TRANSPORT, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { TelemetryConfig } from '../config/types.ts';
import type { RedisClient } from '../redis.ts';
import type { JsonRpcId } from '../errors.ts';
import { headerValue } from '../protocol/headers.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { isSessionRevision, STATELESS_REVISION } from '../protocol/revisions.ts';
import type { EventSpan, EventTracer, TracedRequest } from '../events/tracing.ts';
import type { ExchangeSpan, ExchangeTracer } from '../upstream/tracing.ts';
import { methodLabel } from './metrics.ts';
import { clip } from './requests.ts';

/**
 * OpenTelemetry traces, loaded only when configured (src/ops/telemetry.ts imports this module
 * then): one SERVER span per MCP request, named and attributed as OpenTelemetry's semantic
 * conventions for MCP say, and a CLIENT child per exchange with an upstream replica. The
 * provider, context manager and propagators are this instance's own, never the process-wide
 * globals, so several gateways in one process (tests) do not mix their spans.
 */

// MCP and GenAI attributes are still "development" in the conventions (the package's incubating
// entry point, not for libraries to import): their names, as the MCP conventions write them.
const MCP_METHOD = 'mcp.method.name';
const MCP_PROTOCOL_VERSION = 'mcp.protocol.version';
const MCP_SESSION = 'mcp.session.id';
const JSONRPC_ID = 'jsonrpc.request.id';
const TOOL_NAME = 'gen_ai.tool.name';
const PROMPT_NAME = 'gen_ai.prompt.name';
const OPERATION = 'gen_ai.operation.name';
// The gateway's own.
const SERVER = 'mcpgw.server';
const REPLICA = 'mcpgw.replica';
const PRINCIPAL = 'mcpgw.principal.hash';
const OUTCOME = 'mcpgw.outcome';
const RESUMED = 'mcpgw.resumed';
const LOG_EVENTS = 'mcpgw.event_log.events';
const LOG_STREAMS = 'mcpgw.event_log.streams';

/** The request an async context serves: set around a door's steps (RequestTrace.run). */
const REQUEST = createContextKey('mcp-gateway request');

/**
 * Longest trace-context value read from a caller (headers and `params._meta`): W3C's own limits
 * (tracestate 512, baggage 8192); a traceparent is 55 characters in its version 00.
 */
const CONTEXT_LIMITS: Readonly<Record<string, number>> = { traceparent: 256, tracestate: 512, baggage: 8192 };

/**
 * What a trace-context value may hold: W3C's are ASCII. A `_meta` string may hold anything, and
 * the baggage propagator keeps an entry's metadata as it came into the header it writes upstream,
 * where CR, LF or a character beyond Latin-1 made undici refuse the whole exchange.
 */
const CONTEXT_CHARS = /^[\t\x20-\x7e]*$/;

/** Reads trace-context keys from headers or a `_meta` object: ASCII strings only, within the limits. */
const CALLER_CONTEXT: TextMapGetter<Record<string, unknown>> = {
  keys: (carrier) => Object.keys(carrier).filter((k) => k in CONTEXT_LIMITS),
  get: (carrier, key) => {
    const limit = CONTEXT_LIMITS[key];
    if (limit === undefined) return undefined;
    const raw = carrier[key];
    const value = Array.isArray(raw) ? raw[0] : raw;
    return typeof value === 'string' && value.length <= limit && CONTEXT_CHARS.test(value) ? value : undefined;
  },
};

/** What accounting knows of a request (src/http/accounting.ts's Call), read when the span starts and ends. */
export interface TracedCall {
  readonly method: string;
  readonly id: JsonRpcId;
  readonly tool: string | undefined;
  readonly principal: string | undefined;
  readonly session?: string | undefined;
  readonly messages?: readonly Envelope[] | undefined;
}

export class Tracing implements ExchangeTracer, EventTracer {
  readonly #provider: TracerProvider;
  readonly #tracer: Tracer;
  readonly #contexts = new AsyncLocalStorageContextManager();
  readonly #propagator = new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] });

  private constructor(config: TelemetryConfig, exporter: SpanExporter) {
    const processor =
      config.exportDelayMs === 0
        ? new SimpleSpanProcessor({ exporter })
        : new BatchSpanProcessor({ exporter, scheduledDelayMillis: config.exportDelayMs, maxQueueSize: config.maxQueueSize, maxExportBatchSize: Math.min(512, config.maxQueueSize) });
    this.#provider = new TracerProvider({
      resource: resourceFromAttributes({ ...config.resourceAttributes, [ATTR_SERVICE_NAME]: config.serviceName }),
      sampler: samplerOf(config),
      spanProcessors: [processor],
    });
    this.#tracer = this.#provider.getTracer('mcp-gateway');
    this.#contexts.enable();
  }

  /** `onExportError` is told when spans could not be exported (at most once a minute). */
  static async start(config: TelemetryConfig, onExportError: (error: string) => void): Promise<Tracing> {
    return new Tracing(config, new ReportingExporter(await exporterOf(config), onExportError));
  }

  /** The trace of one MCP request (its span starts once something needs it, or when it ends). */
  request(call: TracedCall, headers: IncomingHttpHeaders, server: string, client: string, started: number): RequestTrace {
    return new RequestTrace(this, call, headers, server, client, started);
  }

  exchange(server: string, replica: string, transport: 'http' | 'sse' | 'stdio', method: string, messages: readonly Envelope[], resendCount?: number): ExchangeSpan | undefined {
    const request = this.#contexts.active().getValue(REQUEST) as RequestTrace | undefined;
    if (!request) return undefined;
    const parent = request.context();
    const first = messages.length === 1 ? messages[0] : undefined;
    const attributes: Attributes = { [SERVER]: server, [REPLICA]: replica, [ATTR_NETWORK_TRANSPORT]: transport === 'stdio' ? 'pipe' : 'tcp' };
    if (method) attributes[ATTR_HTTP_REQUEST_METHOD] = method;
    // A retry's resend (src/pipeline/retry.ts): the conventions' attribute, set on resends only, from 1.
    if (resendCount) attributes[ATTR_HTTP_REQUEST_RESEND_COUNT] = resendCount;
    const name = first?.method === undefined ? describeMessages(messages, attributes) || method || 'exchange' : messageAttributes(first, attributes);
    const span = this.#tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes }, parent);
    const carrier: Record<string, string> = {};
    this.#propagator.inject(trace.setSpan(parent, span), carrier, defaultTextMapSetter);
    return new Exchange(span, carrier);
  }

  /**
   * Redis round trips made while serving a request (its session check, rate limits, the result
   * cache) become CLIENT children of its span, named by the command alone: keys hold session ids
   * and principals, so no argument is recorded. Commands outside a request (the event log's
   * relays, sweeps) are not traced.
   */
  instrumentRedis(client: RedisClient): void {
    const redis = client as unknown as { sendCommand(command: { name: string; promise: Promise<unknown> }, ...rest: unknown[]): unknown };
    const send = redis.sendCommand.bind(redis);
    redis.sendCommand = (command, ...rest) => {
      const request = this.#contexts.active().getValue(REQUEST) as RequestTrace | undefined;
      if (request) {
        const operation = clip(command.name, 32).toUpperCase();
        const span = this.#tracer.startSpan(operation, { kind: SpanKind.CLIENT, attributes: { [ATTR_DB_SYSTEM_NAME]: 'redis', [ATTR_DB_OPERATION_NAME]: operation } }, request.context());
        const exchange = new Exchange(span, {});
        command.promise.then(
          () => exchange.end(),
          () => exchange.end('redis_error'),
        );
      }
      return send(command, ...rest);
    };
  }

  current(): RequestTrace | undefined {
    return this.#contexts.active().getValue(REQUEST) as RequestTrace | undefined;
  }

  /**
   * One pipeline of event-log writes: named as the database conventions name a batch of mixed
   * commands (`BATCH`), a child of the first request it writes for, linked to the others.
   */
  logWrite(requests: readonly TracedRequest[], events: number, streams: number): EventSpan {
    const [first, ...others] = requests as readonly RequestTrace[];
    const links: Link[] = others.map((r) => ({ context: trace.getSpanContext(r.context())! }));
    const attributes: Attributes = { [ATTR_DB_SYSTEM_NAME]: 'redis', [ATTR_DB_OPERATION_NAME]: 'BATCH', [LOG_EVENTS]: events, [LOG_STREAMS]: streams };
    return new Exchange(this.#tracer.startSpan('BATCH', { kind: SpanKind.CLIENT, attributes, links }, first!.context()), {});
  }

  replay(): EventSpan | undefined {
    const request = this.current();
    return request && new Exchange(this.#tracer.startSpan('replay', { kind: SpanKind.INTERNAL }, request.context()), {});
  }

  outside<R>(fn: () => R): R {
    return this.#contexts.with(ROOT_CONTEXT, fn);
  }

  /** Exports what is pending and stops; spans ended later are dropped. */
  async shutdown(): Promise<void> {
    this.#contexts.disable();
    await this.#provider.shutdown();
  }

  /** @internal RequestTrace's access to what it shares with its Tracing. */
  run<A extends unknown[], R>(request: RequestTrace, fn: (...args: A) => R, args: A): R {
    return this.#contexts.with(ROOT_CONTEXT.setValue(REQUEST, request), fn, undefined, ...args);
  }

  /** @internal */
  startServerSpan(name: string, headers: IncomingHttpHeaders, messages: readonly Envelope[] | undefined, attributes: Attributes, startTime: number): Context {
    const fromHeaders = this.#propagator.extract(ROOT_CONTEXT, headers as Record<string, unknown>, CALLER_CONTEXT);
    // SEP-414: the context a message carries in params._meta is its parent; the HTTP request's
    // (a different hop when both are there) is linked, as the MCP conventions say.
    const meta = messages?.length === 1 ? messages[0]!.params?._meta : undefined;
    const fromMeta = meta !== null && typeof meta === 'object' && !Array.isArray(meta) ? this.#propagator.extract(ROOT_CONTEXT, meta as Record<string, unknown>, CALLER_CONTEXT) : undefined;
    const metaParent = fromMeta && trace.getSpanContext(fromMeta);
    const headerParent = trace.getSpanContext(fromHeaders);
    const parent = metaParent ? fromMeta : fromHeaders;
    const links: Link[] = metaParent && headerParent && headerParent.spanId !== metaParent.spanId ? [{ context: headerParent }] : [];
    const span = this.#tracer.startSpan(name, { kind: SpanKind.SERVER, attributes, links, startTime }, parent);
    return trace.setSpan(parent, span);
  }
}

/**
 * One MCP request's SERVER span. It starts when the first thing needs its context (an upstream
 * exchange, a log line) or when the request is accounted — by then the body has been read, so a
 * parent in `params._meta` is known — with the request's arrival as its start time.
 */
export class RequestTrace implements TracedRequest {
  readonly traced = true;
  readonly #tracing: Tracing;
  // Let go once the span ended: a context outlives its request in whatever async work the request
  // started (a stdio child's handlers, a timer), and must not keep its messages alive.
  #call: TracedCall | undefined;
  #headers: IncomingHttpHeaders | undefined;
  readonly #server: string;
  readonly #client: string;
  readonly #started: number;
  #context: Context | undefined;
  #ended = false;

  constructor(tracing: Tracing, call: TracedCall, headers: IncomingHttpHeaders, server: string, client: string, started: number) {
    this.#tracing = tracing;
    this.#call = call;
    this.#headers = headers;
    this.#server = server;
    this.#client = client;
    this.#started = started;
  }

  /** Runs a door's steps with this request as the context of whatever they start (upstream exchanges). */
  run<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): R {
    return this.#tracing.run(this, fn, args);
  }

  /** The context holding the request's span (started now if it has not been). */
  context(): Context {
    return (this.#context ??= this.#start());
  }

  /** `trace_id` and `span_id` for the request's log lines. */
  logFields(): { trace_id: string; span_id: string } {
    const { traceId, spanId } = trace.getSpan(this.context())!.spanContext();
    return { trace_id: traceId, span_id: spanId };
  }

  /** The request was accounted: what the client got names the span's outcome. */
  end(status: number, error: string | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    const span = trace.getSpan(this.context())!;
    const call = this.#call!;
    this.#call = undefined;
    this.#headers = undefined;
    if (!span.isRecording()) return span.end();
    const attributes: Attributes = { [OUTCOME]: error === undefined ? 'success' : 'error', [ATTR_HTTP_RESPONSE_STATUS_CODE]: status };
    // The method and target are known only now for a request whose span started early.
    span.updateName(this.#name(call, attributes));
    if (call.session !== undefined) attributes[MCP_SESSION] = pseudonym(call.session);
    if (call.principal !== undefined) attributes[PRINCIPAL] = pseudonym(call.principal);
    if (error !== undefined) {
      attributes[ATTR_ERROR_TYPE] = error;
      span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    }
    span.setAttributes(attributes);
    span.end();
  }

  #start(): Context {
    const call = this.#call!;
    const headers = this.#headers!;
    const attributes: Attributes = { [SERVER]: this.#server, [ATTR_NETWORK_TRANSPORT]: 'tcp', [ATTR_NETWORK_PROTOCOL_NAME]: 'http', [ATTR_CLIENT_ADDRESS]: this.#client };
    const version = headerValue(headers['mcp-protocol-version']);
    if (isSessionRevision(version) || version === STATELESS_REVISION) attributes[MCP_PROTOCOL_VERSION] = version;
    // resumption: a GET that picks a stream up again (Last-Event-ID).
    if (headers['last-event-id'] !== undefined) attributes[RESUMED] = true;
    return this.#tracing.startServerSpan(this.#name(call, attributes), headers, call.messages, attributes, performance.timeOrigin + this.#started);
  }

  /** `{mcp.method.name} {target}` (the conventions' span name), filling in the method's attributes. */
  #name(call: TracedCall, attributes: Attributes): string {
    const messages = call.messages;
    if (messages?.length === 1 && messages[0]!.method !== undefined) return messageAttributes(messages[0]!, attributes, call.tool);
    return describeMessages(messages ?? [], attributes) || call.method;
  }
}

class Exchange implements ExchangeSpan, EventSpan {
  readonly context: Readonly<Record<string, string>>;
  readonly #span: Span;
  #ended = false;

  constructor(span: Span, context: Record<string, string>) {
    this.#span = span;
    this.context = context;
  }

  set(key: string, value: number | string | boolean): void {
    this.#span.setAttribute(key, value);
  }

  end(error?: string, status?: number): void {
    if (this.#ended) return;
    this.#ended = true;
    if (status !== undefined) this.#span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
    if (error !== undefined) {
      this.#span.setAttribute(ATTR_ERROR_TYPE, error);
      this.#span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    }
    this.#span.end();
  }
}

/** Tells of failed exports (a collector down, a refused API key), at most once a minute: nothing else would. */
class ReportingExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #report: (error: string) => void;
  #lastReport = -Infinity;

  constructor(inner: SpanExporter, report: (error: string) => void) {
    this.#inner = inner;
    this.#report = report;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS && performance.now() - this.#lastReport >= REPORT_EVERY_MS) {
        this.#lastReport = performance.now();
        this.#report(result.error?.message ?? 'export failed');
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

const REPORT_EVERY_MS = 60_000;

/** One message's attributes (method, tool or prompt, id) into `attributes`; returns the span name. */
function messageAttributes(m: Envelope, attributes: Attributes, tool?: string): string {
  // As the metrics label it: a method name no revision has is a caller's choice, `other` here.
  const method = methodLabel(m.method);
  attributes[MCP_METHOD] = method;
  if (m.id !== null) attributes[JSONRPC_ID] = clip(String(m.id), 128);
  const name = typeof m.params?.name === 'string' ? clip(m.params.name) : undefined;
  if (m.method === 'tools/call' && (tool ?? name) !== undefined) {
    const target = clip(tool ?? name!);
    attributes[TOOL_NAME] = target;
    attributes[OPERATION] = 'execute_tool';
    return `${method} ${target}`;
  }
  if (m.method === 'prompts/get' && name !== undefined) {
    attributes[PROMPT_NAME] = name;
    return `${method} ${name}`;
  }
  return method;
}

/** A batch, or a response the client sends: no single method to name the span by. */
function describeMessages(messages: readonly Envelope[], attributes: Attributes): string {
  if (messages.length === 0) return '';
  if (messages.length > 1) return 'batch';
  attributes[JSONRPC_ID] = clip(String(messages[0]!.id), 128);
  return 'response';
}

/**
 * A session id or principal as a span shows it: a hash, the same on every replica, so one
 * session's or caller's spans can be found together without the trace store holding a bearer
 * session id or a caller's name.
 */
function pseudonym(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 32);
}

function samplerOf(config: TelemetryConfig): Sampler {
  // The caller's sampled flag decides only under a parent-based sampler: `always_off` (and a ratio
  // without `parentbased_`) is the operator's, whatever a traceparent says.
  switch (config.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(config.samplerArg);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.samplerArg) });
  }
}

/** The exporter: OTLP/HTTP in the configured encoding (only that exporter's code is loaded), or the console. */
async function exporterOf(config: TelemetryConfig): Promise<SpanExporter> {
  if (config.exporter === 'console') return new ConsoleSpanExporter();
  const options = { url: config.url, headers: { ...config.headers } };
  if (config.protocol === 'http/json') return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter(options);
  return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter(options);
}
