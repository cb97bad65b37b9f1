/**
 * The limit stage: charges a request's messages to its server's rate limits (per principal, per
 * server, per tool) before any upstream sees them, on every door. Passing it is the only way to
 * get an `Admitted` token, which every upstream request built for a caller's messages carries.
 * Throws MCPGW_ERR_RATE_LIMITED (429, Retry-After) when a limit is spent.
 */
import { createHash } from 'node:crypto';
import type { GatewayConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import type { RateCheck, RateLimiter, RateVerdict } from '../resilience/limiter.ts';
import type { Admitted } from './admission.ts';
import type { PipelineRequest } from './request.ts';

const ADMITTED: Admitted = Object.freeze({}) as Admitted;

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
   * Admits the request, or throws MCPGW_ERR_RATE_LIMITED. Synchronous when nothing of it is
   * limited (no promise on the hot path).
   */
  admit(req: PipelineRequest): Admitted | Promise<Admitted> {
    const limits = this.#config.servers[req.server]?.rateLimit;
    if (!limits) return ADMITTED;
    let requests = 0;
    let tools: Map<string, number> | undefined;
    for (const m of req.messages) {
      if (m.kind !== 'request') continue;
      requests++;
      const tool = toolName(m);
      if (tool !== undefined && Object.hasOwn(limits.tools, tool)) (tools ??= new Map()).set(tool, (tools.get(tool) ?? 0) + 1);
    }
    if (requests === 0) return ADMITTED;
    const base = `${this.#prefix}rl:{${req.server}}:`;
    const who = digest(req.principal ?? '');
    const checks: RateCheck[] = [];
    if (limits.principal) checks.push({ key: `${base}p:${who}`, rule: limits.principal, cost: requests, scope: 'principal' });
    if (limits.server) checks.push({ key: `${base}s`, rule: limits.server, cost: requests, scope: 'server' });
    for (const [tool, n] of tools ?? []) checks.push({ key: `${base}t:${digest(tool)}:${who}`, rule: limits.tools[tool]!, cost: n, scope: 'tool' });
    if (checks.length === 0) return ADMITTED;
    return this.#limiter.take(checks).then((verdict) => this.#verdict(req.server, verdict));
  }

  #verdict(server: string, verdict: RateVerdict): Admitted {
    if (verdict.ok) return ADMITTED;
    this.#metrics.rateLimit(server, verdict.scope);
    const err = new GatewayError('MCPGW_ERR_RATE_LIMITED', `server "${server}": the ${verdict.scope} limit`);
    err.headers = { 'retry-after': String(Math.max(1, Math.ceil(verdict.retryAfterMs / 1000))) };
    throw err;
  }
}

function toolName(m: Envelope): string | undefined {
  const name = m.method === 'tools/call' ? m.params?.name : undefined;
  return typeof name === 'string' ? name : undefined;
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
}
