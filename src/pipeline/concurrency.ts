/**
 * The concurrency cap (`servers.<name>.tools.<tool>.concurrency`): at most N calls of a tool
 * running at once for one caller — the principal, or the holder when auth is off — on this
 * replica. A request's slots are taken synchronously when it enters the chain (no await between
 * the check and the taking) and given back once when its answer is over (src/pipeline/pipeline.ts);
 * each `tools/call` of the tool in a batch takes one; one sent as a notification (no id: nothing
 * says when it ends) or as a task (`params.task`: answered at once, the tool runs on) is refused. A call past the cap is refused with
 * MCPGW_ERR_RATE_LIMITED and no Retry-After: when a slot frees depends on the running calls.
 * Memory: one entry per (server, tool, caller) with calls running, deleted at zero.
 */
import type { GatewayConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { PipelineRequest } from './request.ts';
import { toolLimits, toolName } from './tools.ts';

export class Concurrency {
  readonly #config: GatewayConfig;
  readonly #metrics: Metrics;
  /** Calls running, by `server \n tool \n caller`. */
  readonly #running = new Map<string, number>();

  constructor(opts: { config: GatewayConfig; metrics: Metrics }) {
    this.#config = opts.config;
    this.#metrics = opts.metrics;
  }

  /** Calls running now, over every capped tool and caller (tests, diagnostics). */
  get running(): number {
    let n = 0;
    for (const v of this.#running.values()) n += v;
    return n;
  }

  /**
   * Takes the request's slots, or throws MCPGW_ERR_RATE_LIMITED (taking none). Returns the
   * function that gives them back (later calls do nothing); undefined when nothing is capped.
   */
  take(req: PipelineRequest): (() => void) | undefined {
    const server = this.#config.servers[req.server];
    if (!server) return undefined;
    let wanted: Map<string, { cap: number; n: number }> | undefined;
    for (const m of req.messages) {
      if (m.kind !== 'request' && m.kind !== 'notification') continue;
      const cap = toolLimits(server, m)?.concurrency;
      if (cap === undefined) continue;
      // Without an id nothing says when it ends: it could run beside the cap, uncounted.
      if (m.kind === 'notification') throw this.#refused(server.name, `a tools/call of tool "${toolName(m)!}" without an id cannot be counted against its cap of ${cap} calls at once`);
      // A task-augmented call (2025-11-25) is answered at once and runs on as a task: its end is not seen either.
      if (m.params?.task !== undefined) throw this.#refused(server.name, `a tools/call of tool "${toolName(m)!}" as a task cannot be counted against its cap of ${cap} calls at once; call it without "task"`);
      const key = `${server.name}\n${toolName(m)!}\n${req.holder}`;
      const w = (wanted ??= new Map()).get(key);
      if (w) w.n++;
      else wanted.set(key, { cap, n: 1 });
    }
    if (!wanted) return undefined;
    for (const [key, { cap, n }] of wanted) {
      if ((this.#running.get(key) ?? 0) + n <= cap) continue;
      throw this.#refused(server.name, `at most ${cap} calls of tool "${key.split('\n')[1]!}" at once per caller; try again once one of yours has finished`);
    }
    for (const [key, { n }] of wanted) this.#running.set(key, (this.#running.get(key) ?? 0) + n);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      for (const [key, { n }] of wanted) {
        const left = (this.#running.get(key) ?? 0) - n;
        if (left > 0) this.#running.set(key, left);
        else this.#running.delete(key);
      }
    };
  }

  #refused(server: string, why: string): GatewayError {
    this.#metrics.rateLimit(server, 'concurrency');
    return new GatewayError('MCPGW_ERR_RATE_LIMITED', `server "${server}": ${why}`);
  }
}
