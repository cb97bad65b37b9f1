/**
 * The concurrency cap (`servers.<name>.tools.<tool>.concurrency`): at most N calls of a tool
 * running at once for one caller — the principal, or the holder when auth is off — on this
 * replica. A request's slots are taken synchronously when it enters the chain (no await between
 * the check and the taking) and given back once when its answer is over (src/pipeline/pipeline.ts);
 * each `tools/call` of the tool in a batch takes one; one sent as a notification (no id: nothing
 * says when it ends) or as a task (`params.task`: answered at once, the tool runs on) is refused. A call past the cap is refused with
 * MCPGW_ERR_RATE_LIMITED and no Retry-After: when a slot frees depends on the running calls.
 * A call that goes on after its answer — a translated call parked for the client's input
 * (`input_required`, src/translate/to-session.ts) — keeps its slots (`Slots.keep`) until it
 * really ends; the retry that carries its input names them (`PipelineRequest.continues`) and
 * takes none of its own for that call.
 * Memory: one entry per (server, tool, caller) with calls running, deleted at zero.
 */
import type { GatewayConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { HeldSlots, PipelineRequest } from './request.ts';
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
   * Takes the request's slots, or throws MCPGW_ERR_RATE_LIMITED (taking none); undefined when
   * nothing is capped, or the only capped call is one `req.continues` holds a slot for already.
   */
  take(req: PipelineRequest): Slots | undefined {
    const server = this.#config.servers[req.server];
    if (!server) return undefined;
    let wanted: Map<string, { cap: number; n: number }> | undefined;
    let continued = false;
    for (const m of req.messages) {
      if (m.kind !== 'request' && m.kind !== 'notification') continue;
      const cap = toolLimits(server, m)?.concurrency;
      if (cap === undefined) continue;
      // Without an id nothing says when it ends: it could run beside the cap, uncounted.
      if (m.kind === 'notification') throw this.#refused(server.name, `a tools/call of tool "${toolName(m)!}" without an id cannot be counted against its cap of ${cap} calls at once`);
      // A task-augmented call (2025-11-25) is answered at once and runs on as a task: its end is not seen either.
      if (m.params?.task !== undefined) throw this.#refused(server.name, `a tools/call of tool "${toolName(m)!}" as a task cannot be counted against its cap of ${cap} calls at once; call it without "task"`);
      const key = `${server.name}\n${toolName(m)!}\n${req.holder}`;
      // A retry going on with a parked call: that call holds the slot (one call of the request, at most).
      if (!continued && req.continues?.holds(key)) {
        continued = true;
        continue;
      }
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
    return new Slots(this.#running, wanted);
  }

  #refused(server: string, why: string): GatewayError {
    this.#metrics.rateLimit(server, 'concurrency');
    return new GatewayError('MCPGW_ERR_RATE_LIMITED', `server "${server}": ${why}`);
  }
}

/**
 * The slots one request took. The pipeline gives them back when the request's answer is over
 * (`settle`) — unless the door's exchange kept them (`keep`) for a call that goes on after its
 * answer: then they are given back when that call really ends, by the function `keep` returned.
 * Either way once.
 */
export class Slots implements HeldSlots {
  readonly #running: Map<string, number>;
  readonly #taken: ReadonlyMap<string, { readonly n: number }>;
  #state: 'held' | 'kept' | 'free' = 'held';

  constructor(running: Map<string, number>, taken: ReadonlyMap<string, { readonly n: number }>) {
    this.#running = running;
    this.#taken = taken;
  }

  /** The pipeline's end of the request: gives the slots back unless they were kept. */
  settle(): void {
    if (this.#state === 'held') this.#free();
  }

  keep(): (() => void) | undefined {
    if (this.#state !== 'held') return undefined;
    this.#state = 'kept';
    return () => {
      if (this.#state === 'kept') this.#free();
    };
  }

  holds(key: string): boolean {
    return this.#state !== 'free' && this.#taken.has(key);
  }

  #free(): void {
    this.#state = 'free';
    for (const [key, { n }] of this.#taken) {
      const left = (this.#running.get(key) ?? 0) - n;
      if (left > 0) this.#running.set(key, left);
      else this.#running.delete(key);
    }
  }
}
