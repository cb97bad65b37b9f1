/**
 * The retry stage: sends a request, and sends it again while its failure is transient (the
 * upstream never answered it: src/resilience/retry.ts), the call is safe to repeat (a read, or a
 * tool its annotations call read-only or idempotent) and the replica's retry budget allows, with
 * backoff. Anything else is sent once. A single `tools/call` of a tool with its own `retry`
 * (`servers.<name>.tools.<tool>.retry`) tries and waits by it; the budget is the replica's. The
 * time limit's expiry ends the waiting.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { backoffMs, isTransient, RETRY_STATUSES, RetryBudget } from '../resilience/retry.ts';
import type { ToolHints } from '../resilience/tool-hints.ts';
import { drain } from '../upstream/body.ts';
import type { ClientRequest, UpstreamResponse } from '../upstream/types.ts';
import type { Exchange, HeldSlots, PipelineRequest } from './request.ts';
import { toolLimits, toolName } from './tools.ts';

export interface RetryEvent {
  readonly server: string;
  readonly replica: string;
  readonly attempt: number;
  readonly reason: string;
}

/** Methods that only read: safe to send again. tools/call is safe when its annotations say so. */
const SAFE_METHODS = new Set(['ping', 'tools/list', 'prompts/list', 'prompts/get', 'resources/list', 'resources/templates/list', 'resources/read', 'completion/complete']);
/** Retry budgets kept (per server and replica); the oldest is forgotten past this. */
const MAX_BUDGETS = 10_000;

export class Retry {
  readonly #hints: ToolHints;
  readonly #onRetry: (e: RetryEvent) => void;
  readonly #budgets = new Map<string, RetryBudget>();

  constructor(opts: { hints: ToolHints; onRetry: (e: RetryEvent) => void }) {
    this.#hints = opts.hints;
    this.#onRetry = opts.onRetry;
  }

  /** Sends `sent` through the door's exchange (with the request's concurrency `slots`); `m` is the request when the body holds exactly one. */
  send(req: PipelineRequest, server: ServerConfig, m: Envelope | undefined, ex: Exchange, sent: ClientRequest, slots?: HeldSlots): Promise<UpstreamResponse> {
    const retry = (m && toolLimits(server, m)?.retry) ?? server.retry;
    const budget = m && retry.attempts > 1 && this.#safe(server, m) ? this.#budget(server, req.replica ?? '') : undefined;
    // Sent once: the exchange's own promise, no other around it.
    if (!budget) return ex.send(sent, slots);
    return this.#sendRetrying(req, server, retry, budget, ex, sent, slots);
  }

  async #sendRetrying(req: PipelineRequest, server: ServerConfig, retry: ServerConfig['retry'], budget: RetryBudget, ex: Exchange, sent: ClientRequest, slots: HeldSlots | undefined): Promise<UpstreamResponse> {
    budget.deposit();
    const expiry = sent.expiry;
    for (let attempt = 1; ; attempt++) {
      let res: UpstreamResponse | undefined;
      let failure: unknown;
      try {
        // traces: a resend says which (the exchange span's http.request.resend_count).
        res = await ex.send(attempt === 1 ? sent : { ...sent, resendCount: attempt - 1 }, slots);
      } catch (err) {
        if (expiry?.aborted) throw expiry.reason!;
        failure = err;
      }
      const transient = failure !== undefined ? isTransient(failure) : RETRY_STATUSES.has(res!.status);
      if (!transient || attempt >= retry.attempts || !budget.withdraw()) {
        if (failure !== undefined) throw failure;
        return res!;
      }
      const body = res?.body;
      if (body && typeof body !== 'string') drain(body);
      this.#onRetry({ server: server.name, replica: req.replica ?? '', attempt, reason: res ? `HTTP ${res.status}` : ((failure as GatewayError).detail ?? 'connection failed') });
      try {
        await sleep(backoffMs(attempt, retry.backoffMs, retry.maxBackoffMs), undefined, expiry ? { signal: expiry.signal } : undefined);
      } catch {
        throw expiry?.reason ?? new GatewayError('MCPGW_ERR_INTERNAL', 'retry aborted');
      }
    }
  }

  #safe(server: ServerConfig, m: Envelope): boolean {
    if (SAFE_METHODS.has(m.method!)) return true;
    if (m.method !== 'tools/call') return false;
    const hint = this.#hints.get(server.name, toolName(m));
    return hint.readOnly || hint.idempotent;
  }

  #budget(server: ServerConfig, replica: string): RetryBudget {
    const key = `${server.name} ${replica}`;
    let budget = this.#budgets.get(key);
    if (!budget) {
      if (this.#budgets.size >= MAX_BUDGETS) this.#budgets.delete(this.#budgets.keys().next().value!);
      this.#budgets.set(key, (budget = new RetryBudget(server.retry.budget, server.retry.minPerSecond)));
    }
    return budget;
  }
}
