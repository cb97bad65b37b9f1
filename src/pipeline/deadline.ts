/**
 * The deadline stage: a single request's time limit — the server's `timeout.idle` without
 * activity (any bytes of its answer: progress, other messages) and `timeout.max` in all — on the
 * doors whose calls do not go through src/resilience/calls.ts (2026-07-28, forwarded and
 * translated; 2024-11-05). On expiry the caller gets MCPGW_ERR_UPSTREAM_TIMEOUT as the JSON-RPC
 * answer to its request, and the upstream is told to stop: `signal` aborts (closing a 2026-07-28
 * request is its cancellation) and the door's `cancelUpstream` runs (notifications/cancelled).
 */
import { EventEmitter } from 'node:events';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { GatewayConfig } from '../config/types.ts';
import { errorBody, GatewayError, type JsonRpcId } from '../errors.ts';
import { Deadline } from '../resilience/deadline.ts';
import type { UpstreamResponse } from '../upstream/types.ts';
import type { Door, PipelineRequest } from './request.ts';

export interface DeadlineEventMap {
  timeout: [{ server: string; door: Door; id: JsonRpcId; reason: 'idle' | 'max' }];
}

export class Deadlines extends EventEmitter<DeadlineEventMap> {
  readonly #config: GatewayConfig;

  constructor(config: GatewayConfig) {
    super();
    this.#config = config;
  }

  /**
   * Starts the time limit of a request with one JSON-RPC request in it; undefined for anything
   * else (notifications and responses are not waited for; a batch's requests share no answer;
   * 2026-07-28 `subscriptions/listen` is a stream that lasts, not a call awaiting its answer).
   */
  start(req: PipelineRequest, cancelUpstream?: (reason: string) => void): TimedCall | undefined {
    const m = req.messages.length === 1 ? req.messages[0]! : undefined;
    if (m?.kind !== 'request' || m.method === 'subscriptions/listen') return undefined;
    const server = this.#config.servers[req.server]!;
    return new TimedCall(server.name, server.timeout, req.door, m.id, this, cancelUpstream);
  }
}

/** One request under its time limit, from its start until its answer's body is over. */
export class TimedCall {
  readonly #server: string;
  readonly #timeout: { readonly idleMs: number; readonly maxMs: number };
  readonly #door: Door;
  readonly #id: JsonRpcId;
  readonly #events: Deadlines;
  readonly #cancelUpstream: ((reason: string) => void) | undefined;
  readonly #controller = new AbortController();
  readonly #deadline: Deadline;
  #body: { readonly source: Readable; readonly activity: Activity } | undefined;
  #done = false;

  constructor(server: string, timeout: { readonly idleMs: number; readonly maxMs: number }, door: Door, id: JsonRpcId, events: Deadlines, cancelUpstream: ((reason: string) => void) | undefined) {
    this.#server = server;
    this.#timeout = timeout;
    this.#door = door;
    this.#id = id;
    this.#events = events;
    this.#cancelUpstream = cancelUpstream;
    this.#deadline = new Deadline(timeout.idleMs, timeout.maxMs, (reason) => this.#expire(reason));
  }

  /** Aborts when the time is up, with the MCPGW_ERR_UPSTREAM_TIMEOUT error as its reason. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * The upstream's answer, within the limit: rejects with MCPGW_ERR_UPSTREAM_TIMEOUT when it does
   * not come in time (an answer that still comes is dropped). A streamed body keeps the limit
   * until it is over: every chunk is activity; on expiry an SSE body ends with the error as its
   * last event, a JSON body fails with it.
   */
  response(pending: Promise<UpstreamResponse>): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const signal = this.#controller.signal;
      const onAbort = () => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      pending.then(
        (res) => {
          signal.removeEventListener('abort', onAbort);
          if (signal.aborted) return dropBody(res);
          resolve(this.#follow(res));
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          this.finish();
          reject(err as Error);
        },
      );
    });
  }

  /** The call is over (answered, or failed otherwise): the limit is lifted. */
  finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#deadline.clear();
  }

  #follow(res: UpstreamResponse): UpstreamResponse {
    const body = res.body;
    if (body === null || typeof body === 'string') {
      this.finish();
      return res;
    }
    const sse = res.headers['content-type']?.startsWith('text/event-stream') ?? false;
    const activity = new Activity(this.#deadline, sse);
    this.#body = { source: body, activity };
    // After expiry the source is cut on purpose: its errors (an aborted fetch) are not the answer's.
    body.on('error', (err) => {
      if (!this.#controller.signal.aborted) activity.destroy(err);
    });
    activity.once('close', () => {
      this.finish();
      if (!body.destroyed) body.destroy();
    });
    body.pipe(activity);
    return { ...res, body: activity };
  }

  #expire(reason: 'idle' | 'max'): void {
    if (this.#done) return;
    this.#done = true;
    const limit = reason === 'idle' ? `no progress for ${this.#timeout.idleMs} ms` : `over the ${this.#timeout.maxMs} ms maximum`;
    const err = new GatewayError('MCPGW_ERR_UPSTREAM_TIMEOUT', `server "${this.#server}": ${limit}`);
    this.#events.emit('timeout', { server: this.#server, door: this.#door, id: this.#id, reason });
    // The answer first, then the cancellations: whatever they end, the client's answer is on its way.
    if (this.#body) {
      const { source, activity } = this.#body;
      source.unpipe(activity);
      activity.expire(err, this.#id);
      source.destroy();
    }
    this.#controller.abort(err);
    this.#cancelUpstream?.(`gateway timeout (${reason})`);
  }
}

/** Passes an answer's body on; each chunk is activity. On expiry it ends with the error instead. */
class Activity extends Transform {
  readonly #deadline: Deadline;
  readonly #sse: boolean;

  constructor(deadline: Deadline, sse: boolean) {
    super();
    this.#deadline = deadline;
    this.#sse = sse;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#deadline.touch();
    callback(null, chunk);
  }

  expire(err: GatewayError, id: JsonRpcId): void {
    if (this.destroyed || this.writableEnded) return;
    if (!this.#sse) return void this.destroy(err);
    // The upstream's part is cut where it stands; the error is the stream's last message.
    this.end(`event: message\ndata: ${errorBody(err, id)}\n\n`);
  }
}

function dropBody(res: UpstreamResponse): void {
  const body = res.body;
  if (body && typeof body !== 'string') body.destroy();
}
