import { pipeline, Transform, type TransformCallback } from 'node:stream';
import type { JsonRpcId } from '../errors.ts';
import { SseSplitter, sseMessage } from '../protocol/sse.ts';
import type { UpstreamResponse } from './types.ts';

/**
 * Reads the result of one request out of an upstream answer while the answer passes through to
 * the client byte for byte: from a JSON body, or from the response event of an SSE stream
 * (notifications and server→client requests before it are skipped). `done` gets the parsed
 * `result` member once the answer ended — or undefined when it was an error, did not come, was
 * cut off, or grew past `maxBytes` (nothing bigger is kept).
 */
export function captureResult(res: UpstreamResponse, id: JsonRpcId, maxBytes: number, done: (result: Record<string, unknown> | undefined) => void): UpstreamResponse {
  const contentType = res.headers['content-type'] ?? '';
  const sse = contentType.startsWith('text/event-stream');
  if (res.status !== 200 || res.body === null || (!sse && !contentType.startsWith('application/json'))) {
    done(undefined);
    return res;
  }
  if (typeof res.body === 'string') {
    done(res.body.length <= maxBytes ? resultFor(parse(res.body), id) : undefined);
    return res;
  }
  const capture = new ResultCapture(sse, id, maxBytes);
  let reported = false;
  const report = (result: Record<string, unknown> | undefined) => {
    if (reported) return;
    reported = true;
    done(result);
  };
  capture.once('end', () => report(capture.result));
  capture.once('close', () => report(capture.ended ? capture.result : undefined));
  // pipeline, not pipe: a client that goes away releases the upstream answer too.
  pipeline(res.body, capture, () => {});
  return { ...res, body: capture };
}

class ResultCapture extends Transform {
  readonly #sse: boolean;
  readonly #id: JsonRpcId;
  readonly #maxBytes: number;
  readonly #events = new SseSplitter();
  #chunks: Buffer[] = [];
  #size = 0;
  #overflow = false;
  result: Record<string, unknown> | undefined;
  ended = false;

  constructor(sse: boolean, id: JsonRpcId, maxBytes: number) {
    super();
    this.#sse = sse;
    this.#id = id;
    this.#maxBytes = maxBytes;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, next: TransformCallback): void {
    if (!this.#overflow && this.result === undefined) {
      this.#size += chunk.length;
      if (this.#sse) {
        try {
          this.#events.push(chunk, (event) => {
            if (this.result !== undefined) return;
            // Only the response event is kept whole: its size counts, what came before does not.
            const answer = resultFor(sseMessage(event)?.msg, this.#id);
            if (answer) this.result = event.length <= this.#maxBytes ? answer : undefined;
            this.#size = 0;
          });
        } catch {
          // An event too large to read is not cached; the bytes still pass.
          this.#overflow = true;
        }
        if (this.#size > this.#maxBytes) this.#overflow = true;
      } else if (this.#size > this.#maxBytes) {
        this.#overflow = true;
        this.#chunks = [];
      } else {
        this.#chunks.push(chunk);
      }
    }
    next(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (!this.#sse && !this.#overflow) this.result = resultFor(parse(Buffer.concat(this.#chunks).toString('utf8')), this.#id);
    this.#chunks = [];
    this.ended = true;
    done();
  }
}

/** The JSON value of `text`; undefined when it is not JSON. */
export function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The `result` of the response to `id`, if `msg` is one. */
export function resultFor(msg: unknown, id: JsonRpcId): Record<string, unknown> | undefined {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return undefined;
  const m = msg as { id?: unknown; method?: unknown; result?: unknown };
  if (m.method !== undefined || m.id !== id) return undefined;
  return m.result !== null && typeof m.result === 'object' && !Array.isArray(m.result) ? (m.result as Record<string, unknown>) : undefined;
}
