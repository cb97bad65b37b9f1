import type { Readable } from 'node:stream';
import type { Envelope } from '../protocol/jsonrpc.ts';
import type { UpstreamResponse } from './types.ts';

/**
 * traces: what an upstream transport tells tracing (src/ops/tracing.ts implements it; undefined
 * when tracing is off, so a transport's only cost then is one branch per exchange).
 */
export interface ExchangeTracer {
  /**
   * The client span of one exchange with a replica, a child of the MCP request being served (none
   * outside one: probes, the gateway's own background calls). `method`: the HTTP method, '' for
   * a channel of messages (stdio, 2024-11-05 SSE). `resendCount`: the request's (ClientRequest), on a retry's resend.
   */
  exchange(server: string, replica: string, transport: 'http' | 'sse' | 'stdio', method: string, messages: readonly Envelope[], resendCount?: number): ExchangeSpan | undefined;
}

export interface ExchangeSpan {
  /** W3C trace context of this span (`traceparent`, and `tracestate` / `baggage` when there are): the HTTP headers, or `_meta` keys. */
  readonly context: Readonly<Record<string, string>>;
  /** Ends it; `error` is an error_type (a gateway code, `http_5xx`, …) when the exchange failed. */
  end(error?: string, status?: number): void;
}

/** Ends `span` when the answer is over: a streamed body when it closes, anything else at once; a failure with its code. */
export async function traced(span: ExchangeSpan, response: Promise<UpstreamResponse>): Promise<UpstreamResponse> {
  let res: UpstreamResponse;
  try {
    res = await response;
  } catch (err) {
    span.end(errorType(err));
    throw err;
  }
  const body = res.body;
  if (body !== null && typeof body !== 'string') endWithBody(span, body, res.status);
  else span.end(httpFailure(res.status), res.status);
  return res;
}

/** Ends `span` once `body` closed (read to its end, or given up). */
export function endWithBody(span: ExchangeSpan, body: Readable, status: number): void {
  body.once('close', () => span.end(body.readableEnded ? httpFailure(status) : (httpFailure(status) ?? 'incomplete'), status));
}

export function httpFailure(status: number): string | undefined {
  return status >= 500 ? 'http_5xx' : status >= 400 ? 'http_4xx' : undefined;
}

/** A gateway code when the failure is one, else `_OTHER` (OpenTelemetry's fallback error.type). */
export function errorType(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('MCPGW_ERR_') ? code : '_OTHER';
}

/**
 * The messages with the span's trace context in `params._meta` (SEP-414: unprefixed
 * `traceparent`, `tracestate`, `baggage`), for channels that carry no headers. Only requests
 * and notifications have params; a response goes as it is. The context replaces a caller's keys
 * of the same name (the upstream's parent is this exchange), and is bounded by the W3C
 * propagators (a traceparent is 55 characters, tracestate at most 512, baggage at most 8192).
 */
export function withTraceMeta(messages: readonly Envelope[], context: Readonly<Record<string, string>>): Record<string, unknown>[] {
  return messages.map((m) => {
    const message = m.message as Record<string, unknown>;
    if (typeof message.method !== 'string') return message;
    const params = message.params;
    if (params !== undefined && (params === null || typeof params !== 'object' || Array.isArray(params))) return message;
    const p = (params ?? {}) as Record<string, unknown>;
    const meta = p._meta !== null && typeof p._meta === 'object' && !Array.isArray(p._meta) ? (p._meta as Record<string, unknown>) : {};
    return { ...message, params: { ...p, _meta: { ...meta, ...context } } };
  });
}
