/**
 * The request value every front door builds for the pipeline (src/pipeline/pipeline.ts): which
 * server, on whose behalf, which messages, through which door, and what the upstream request is
 * written from. It carries nothing of HTTP but the client's headers (an upstream transport copies
 * only what it checks): a stage reads this and the server's config, never a Fastify request.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { JsonRpcId } from '../errors.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import type { ClientRequest, Upstream, UpstreamResponse } from '../upstream/types.ts';

/**
 * The front doors: `session` (2025-03-26 … 2025-11-25 Streamable HTTP), `stateless` (2026-07-28,
 * forwarded or translated), `legacy` (2024-11-05 HTTP+SSE), `compose` (a virtual server's call
 * of one of its members).
 */
export type Door = 'session' | 'stateless' | 'legacy' | 'compose';

export interface PipelineRequest {
  readonly server: string;
  /** The authenticated caller's id; undefined when auth is off. */
  readonly principal: string | undefined;
  /** Whom per-caller caps count it against (the principal, or the address when auth is off). */
  readonly holder: string;
  /** The checked messages to send (none for GET and DELETE); a guard's masked copy when it swapped names. */
  readonly messages: readonly Envelope[];
  readonly door: Door;
  /** The client's headers (or the door's own, for a door whose client sends no MCP headers). */
  readonly headers: IncomingHttpHeaders;
  /** The messages go as a JSON array. */
  readonly batch: boolean;
  readonly protocolVersion: string;
  /** The gateway session it belongs to: a client's notifications/cancelled finds its call by it. */
  readonly session?: string | undefined;
  /** The upstream replica a session is pinned to: retry budgets are per replica. */
  readonly replica?: string | undefined;
  /**
   * auth: the guard swapped a name the caller may not use for one that cannot exist, or filters
   * the answer in a way the cache cannot see: never answered from the cache, invalidates nothing.
   */
  readonly masked?: boolean | undefined;
  /**
   * The door hands an SSE answer (status 200) to the event hub, whose producer reads its events
   * and tells the time limit of them (`UpstreamResponse.events`): the pipeline does not read it too.
   */
  readonly relayed?: boolean | undefined;
  /**
   * The slots of the call this request goes on with (a 2026-07-28 retry carrying the
   * `requestState` of a call parked for input, which holds them): its call of that tool takes
   * no other (src/pipeline/concurrency.ts).
   */
  readonly continues?: HeldSlots | undefined;
}

/**
 * A request's slots under the concurrency cap (src/pipeline/concurrency.ts `Slots`), as the
 * door's exchange sees them: a call that goes on after its answer keeps them until it ends.
 */
export interface HeldSlots {
  /**
   * The slots outlive the request's answer: the function returned gives them back (once, later
   * calls do nothing) when the call really ends. Undefined when kept or given back already.
   */
  keep(): (() => void) | undefined;
  /** Whether they are still held and count a call of `key` (`server \n tool \n caller`). */
  holds(key: string): boolean;
}

/** What a door supplies: how its upstream is reached. Nothing else of a request is the door's to decide. */
export interface Exchange {
  /** The server's upstream (the breaker stage reads its health). */
  readonly upstream: Upstream;
  /**
   * Sends the request the chain built (its `signal` aborts when the time limit is up); `slots`,
   * the concurrency slots it holds, if any (a call that outlives its answer keeps them).
   */
  send(req: ClientRequest, slots?: HeldSlots): Promise<UpstreamResponse>;
  /** Tells the upstream to stop working on request `id` (its time limit expired). */
  cancel?(id: JsonRpcId, reason: string): void;
}
