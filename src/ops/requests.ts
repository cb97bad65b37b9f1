import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Metrics } from './metrics.ts';

/** What the HTTP layer learns about a client request while handling it. */
export interface RequestInfo {
  /** Method label (see methodLabel), or `GET` / `DELETE` for the bodiless routes. */
  method: string;
  /** Tool name of a single `tools/call`. */
  tool: string | undefined;
  /** Who called, once a session or a credential names them. */
  principal: string | undefined;
  /** traces: the request's span, whose ids its log lines carry; undefined when tracing is off. */
  readonly trace?: { logFields(): { trace_id: string; span_id: string } } | undefined;
}

/** Longest name a caller chose (a tool, a method) that a log or audit line carries whole. */
export const MAX_LOGGED_NAME = 256;

/** `value` cut to `max` characters, saying how long it was: callers do not decide how long our lines get. */
export function clip(value: string, max = MAX_LOGGED_NAME): string {
  return value.length <= max ? value : `${value.slice(0, max)}…[${value.length} characters]`;
}

/**
 * The fields every per-request log line carries. Built only when a line is written: a child
 * logger per request would cost an allocation and a serialization on every call.
 */
export function requestLogFields(reqId: string, server: string, info: RequestInfo): Record<string, unknown> {
  return { reqId, principal: info.principal, server, method: info.method, tool: info.tool === undefined ? undefined : clip(info.tool), ...info.trace?.logFields() };
}

/**
 * Counts a finished request — `error` its error_type when the client got an error, `status` the
 * HTTP status sent — and, at debug level only, logs it.
 */
export function recordRequest(metrics: Metrics, log: Logger, reqId: string, server: string, info: RequestInfo, error: string | undefined, status: number, started: number): void {
  const seconds = (performance.now() - started) / 1000;
  metrics.request(info.method, error, status, seconds);
  if (info.tool !== undefined) metrics.observeTool(server, info.tool, error !== undefined, seconds);
  if (log.isLevelEnabled('debug')) log.debug({ ...requestLogFields(reqId, server, info), status, error, ms: Math.round(seconds * 1e6) / 1e3 }, 'request');
}
