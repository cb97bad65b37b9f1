import { StringDecoder } from 'node:string_decoder';
import type { Readable, Writable } from 'node:stream';
import { createParser } from 'eventsource-parser';
import { GatewayError } from '../errors.ts';
import { EventSize, tooLarge } from '../protocol/sse.ts';
import { readText } from '../upstream/messages.ts';
import type { UpstreamResponse } from '../upstream/types.ts';
import { discard } from '../upstream/body.ts';
import { PollSchedule } from '../upstream/polling.ts';

/** One JSON-RPC message as the translator handles it: parsed, rewritten, serialized again. */
export type Message = Record<string, unknown> & { id?: string | number | null; method?: string; params?: Record<string, unknown>; result?: Record<string, unknown>; error?: { code: number; message: string; data?: unknown } };

export const isRequest = (m: Message): boolean => typeof m.method === 'string' && m.id !== undefined && m.id !== null;
export const isNotification = (m: Message): boolean => typeof m.method === 'string' && m.id === undefined;
export const isResponse = (m: Message): boolean => m.method === undefined && ('result' in m || 'error' in m);

/** A message as one SSE event; the hub numbers it before the client sees it. */
export function sseEvent(m: Message): string {
  return `event: message\ndata: ${JSON.stringify(m)}\n\n`;
}

/** Writes one message to a client stream that may be gone already. */
export function emit(out: Writable, m: Message): void {
  if (!out.destroyed && !out.writableEnded) out.write(sseEvent(m));
}

/** Opens the rest of a broken SSE stream at the upstream's event id; undefined when it cannot. */
export type Resume = (lastEventId: string) => Promise<Readable | undefined>;

const TIMEOUT = Symbol('timeout');

/**
 * The JSON-RPC messages of an upstream answer, one at a time, whether it came as one JSON body or
 * as an SSE stream. Messages are queued as they arrive, so a reader may stop asking for a while
 * (a call parked until the client answers an input request) and pick up where it left. An SSE
 * stream that ends or breaks before the reader is closed is asked for again at the upstream's
 * last event id (an upstream may have its clients poll, SEP-1699), when src/upstream/polling.ts
 * says; when that cannot be done the answer ends with MCPGW_ERR_STREAM_LOST.
 */
export class MessageReader {
  readonly #queue: Message[] = [];
  #waiter: ((m: Message | undefined | typeof TIMEOUT) => void) | undefined;
  #ended = false;
  #body: Readable | undefined;
  #lastEventId = '';
  readonly #resume: Resume | undefined;
  readonly #polls: PollSchedule;
  #pollTimer: NodeJS.Timeout | undefined;
  /** Set when the stream ended on an error (after any resumption failed). */
  failure: GatewayError | undefined;

  static readonly TIMEOUT: typeof TIMEOUT = TIMEOUT;

  /** `pollLimitMs`: how long the upstream may be polled without a message (the request's time limit). */
  constructor(res: UpstreamResponse, resume?: Resume, pollLimitMs?: number) {
    this.#resume = resume;
    this.#polls = new PollSchedule(pollLimitMs);
    const contentType = res.headers['content-type'] ?? '';
    if (res.body === null) this.#end();
    else if (typeof res.body === 'string') this.#json(res.body);
    else if (contentType.startsWith('text/event-stream')) this.#sse(res.body);
    else void this.#readJson(res.body);
  }

  /** The next message; undefined once the answer is over; `TIMEOUT` when `waitMs` passed first. */
  next(waitMs?: number): Promise<Message | undefined | typeof TIMEOUT> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#ended) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.#waiter = (m) => {
        clearTimeout(timer);
        this.#waiter = undefined;
        resolve(m);
      };
      if (waitMs !== undefined) timer = setTimeout(() => this.#waiter?.(TIMEOUT), waitMs);
    });
  }

  /** Puts a message back at the front (it was looked at, not consumed). */
  unshift(m: Message): void {
    this.#queue.unshift(m);
  }

  /** Stops reading: the upstream response is closed (for 2026-07-28 upstreams, that cancels). */
  close(): void {
    this.#ended = true;
    clearTimeout(this.#pollTimer);
    if (this.#body) discard(this.#body);
    this.#waiter?.(undefined);
  }

  get ended(): boolean {
    return this.#ended && this.#queue.length === 0;
  }

  #push(m: Message): void {
    if (this.#waiter) this.#waiter(m);
    else this.#queue.push(m);
  }

  #end(failure?: GatewayError): void {
    if (this.#ended) return;
    this.failure = failure;
    this.#ended = true;
    this.#waiter?.(undefined);
  }

  #json(text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return this.#end(new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', 'the answer is not JSON'));
    }
    for (const m of Array.isArray(value) ? value : [value]) if (m && typeof m === 'object') this.#push(m as Message);
    this.#end();
  }

  async #readJson(body: Readable): Promise<void> {
    this.#body = body;
    let text: string;
    try {
      // At most 16 MiB, as every JSON answer the gateway reads.
      text = await readText(body);
    } catch (err) {
      return this.#end(err instanceof GatewayError ? err : new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', 'the answer broke off'));
    }
    this.#json(text);
  }

  async #poll(): Promise<void> {
    const next = await this.#resume!(this.#lastEventId).catch(() => undefined);
    if (this.#ended) {
      if (next) discard(next);
      return;
    }
    if (next) this.#sse(next);
    else this.#end(lost());
  }

  #sse(body: Readable): void {
    this.#body = body;
    this.#polls.opened();
    const parser = createParser({
      onEvent: (event) => {
        if (event.id) this.#lastEventId = event.id;
        if (!event.data.trim()) return;
        this.#polls.message();
        try {
          const m = JSON.parse(event.data) as unknown;
          if (m && typeof m === 'object' && !Array.isArray(m)) this.#push(m as Message);
        } catch {
          // Not JSON-RPC: nothing a client could use.
        }
      },
      onRetry: (ms) => this.#polls.retry(ms),
    });
    const decoder = new StringDecoder('utf8');
    const size = new EventSize();
    body.on('data', (chunk: Buffer | string) => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
      if (size.ok(text)) parser.feed(text);
      else body.destroy(tooLarge());
    });
    let done = false;
    const finish = (broken: boolean) => {
      if (done || this.#body !== body) return;
      done = true;
      if (this.#ended) return;
      // A stream that ends before its answer is resumed at the upstream's last event id; one
      // that could be, but not any more (the time limit), is lost like a broken one.
      const resumable = this.#resume !== undefined && this.#lastEventId !== '';
      const wait = resumable ? this.#polls.next() : undefined;
      if (wait === undefined) return this.#end(broken || resumable ? lost() : undefined);
      this.#pollTimer = setTimeout(() => void this.#poll(), wait);
      this.#pollTimer.unref();
    };
    body.once('end', () => finish(false));
    body.once('error', () => finish(true));
    body.once('close', () => finish(true));
  }
}

const lost = () => new GatewayError('MCPGW_ERR_STREAM_LOST');
