/**
 * The limit stage: charges a request's messages to its server's rate limits (per principal, per
 * server, per tool) before any upstream sees them, on every door (the first stage of
 * src/pipeline/pipeline.ts). Every message that asks for work is charged: a request, and a
 * notification named like a request (a `tools/call` without an id must not run for free).
 * Throws MCPGW_ERR_RATE_LIMITED (429, Retry-After) when a limit is spent.
 */
import { createHash } from 'node:crypto';
import type { GatewayConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import type { RateCheck, RateLimiter, RateVerdict } from '../resilience/limiter.ts';
import type { PipelineRequest } from './request.ts';
import { toolName } from './tools.ts';

export class Limit {
  readonly #config: GatewayConfig;
  readonly #metrics: Metrics;
  readonly #limiter: RateLimiter;
  readonly #prefix: string;

  constructor(opts: { config: GatewayConfig; metrics: Metrics; limiter: RateLimiter; prefix: string }) {
    this.#config = opts.config;
    this.#metrics = opts.metrics;
    this.#limiter = opts.limiter;
    this.#prefix = opts.prefix;
  }

  /**
   * Charges the request, or throws MCPGW_ERR_RATE_LIMITED. Synchronous (undefined) when nothing
   * of it is limited (no promise on the hot path).
   */
  admit(req: PipelineRequest): Promise<void> | undefined {
    const limits = this.#config.servers[req.server]?.rateLimit;
    if (!limits) return undefined;
    let requests = 0;
    let tools: Map<string, number> | undefined;
    for (const m of req.messages) {
      if (!asksForWork(m)) continue;
      requests++;
      const tool = toolName(m);
      if (tool !== undefined && Object.hasOwn(limits.tools, tool)) (tools ??= new Map()).set(tool, (tools.get(tool) ?? 0) + 1);
    }
    if (requests === 0) return undefined;
    const base = `${this.#prefix}rl:{${req.server}}:`;
    const who = digest(req.principal ?? '');
    const checks: RateCheck[] = [];
    if (limits.principal) checks.push({ key: `${base}p:${who}`, rule: limits.principal, cost: requests, scope: 'principal' });
    if (limits.server) checks.push({ key: `${base}s`, rule: limits.server, cost: requests, scope: 'server' });
    for (const [tool, n] of tools ?? []) checks.push({ key: `${base}t:${digest(tool)}:${who}`, rule: limits.tools[tool]!, cost: n, scope: 'tool' });
    if (checks.length === 0) return undefined;
    return this.#limiter.take(checks).then((verdict) => this.#verdict(req.server, verdict));
  }

  #verdict(server: string, verdict: RateVerdict): void {
    if (verdict.ok) return;
    this.#metrics.rateLimit(server, verdict.scope);
    const err = new GatewayError('MCPGW_ERR_RATE_LIMITED', `server "${server}": the ${verdict.scope} limit`);
    err.headers = { 'retry-after': String(Math.max(1, Math.ceil(verdict.retryAfterMs / 1000))) };
    throw err;
  }
}

/** A request, or a notification with a request's method (notifications are named `notifications/…`). */
function asksForWork(m: Envelope): boolean {
  return m.kind === 'request' || (m.kind === 'notification' && !m.method!.startsWith('notifications/'));
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
}
