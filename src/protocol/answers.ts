import { Transform, type Readable, type TransformCallback, pipeline } from 'node:stream';
import { ERRORS, GatewayError } from '../errors.ts';

/**
 * What a client was answered, as accounting reads it: success, or an error of a bounded
 * `error_type` — the gateway's own code (`MCPGW_ERR_*`), `rpc_<name>` for a JSON-RPC error an
 * upstream answered, `tool_error` for a result with `isError: true`, `cancelled` for a request
 * the client gave up before its answer, `http_4xx` / `http_5xx` for an HTTP error without a
 * JSON-RPC one. Answers are looked into cheaply: a body or an event is parsed only when it holds
 * `"error"` or `"isError"` at all.
 */

/** JSON-RPC and MCP error codes with a name of their own; other codes are `rpc_server_error` (-32099…-32000) or `rpc_other`. */
export const RPC_ERROR_TYPES: Readonly<Record<number, string>> = {
  [-32700]: 'rpc_parse_error',
  [-32600]: 'rpc_invalid_request',
  [-32601]: 'rpc_method_not_found',
  [-32602]: 'rpc_invalid_params',
  [-32603]: 'rpc_internal_error',
  // MCP: resources/read of an unknown resource (before 2026-07-28), URL elicitation (2025-11-25),
  // the header, capability and version errors of 2026-07-28.
  [-32002]: 'rpc_resource_not_found',
  [-32042]: 'rpc_url_elicitation_required',
  [-32020]: 'rpc_header_mismatch',
  [-32021]: 'rpc_missing_capability',
  [-32022]: 'rpc_unsupported_version',
};

/** Every `error_type` that is not a gateway code (docs/observability.md lists each). */
export const ANSWER_ERROR_TYPES = [...Object.values(RPC_ERROR_TYPES), 'rpc_server_error', 'rpc_other', 'tool_error', 'cancelled', 'http_4xx', 'http_5xx'] as const;

/**
 * Told what a client gets: each failed answer as it passes, and (for an answer that comes after
 * the response it belongs to has been handed over — a relayed stream, a 2024-11-05 answer) once
 * when it is over.
 */
export interface AnswerSink {
  /** An answer (or the gateway's own error in its place) was an error of this type. */
  failed(type: string): void;
  /** The answer is over; `failure` when it ended without answering every request (why). */
  settled(failure?: string): void;
}

/** The error_type of a JSON-RPC error object: the gateway code it carries (ours, or a gateway's upstream of us), else by its code. */
export function rpcErrorType(error: unknown): string {
  if (error === null || typeof error !== 'object') return 'rpc_other';
  const { code, data } = error as { code?: unknown; data?: { code?: unknown } | null };
  const own = data !== null && typeof data === 'object' ? data.code : undefined;
  if (typeof own === 'string' && Object.hasOwn(ERRORS, own)) return own;
  if (typeof code !== 'number') return 'rpc_other';
  return RPC_ERROR_TYPES[code] ?? (code >= -32099 && code <= -32000 ? 'rpc_server_error' : 'rpc_other');
}

/** The error_type of one parsed message when it is a failed response; undefined for a success or anything that is no response. */
export function responseFailure(message: unknown): string | undefined {
  if (message === null || typeof message !== 'object') return undefined;
  if (Array.isArray(message)) {
    for (const m of message) {
      const f = responseFailure(m);
      if (f !== undefined) return f;
    }
    return undefined;
  }
  const m = message as { method?: unknown; error?: unknown; result?: unknown };
  if (m.method !== undefined) return undefined;
  if (m.error !== undefined) return rpcErrorType(m.error);
  const result = m.result as { isError?: unknown } | null | undefined;
  return result !== null && typeof result === 'object' && result.isError === true ? 'tool_error' : undefined;
}

/** A JSON-RPC response as a stream's bookkeeping reads it: an id, and no method. */
export type ParsedResponse = { readonly id: unknown; readonly method?: undefined; readonly error?: unknown };

/**
 * One upstream message's text, parsed only when it can be a response (it holds `"result"` or
 * `"error"`): the parsed `message` (whatever it is, for accounting) and, when it is a response,
 * `response`. Undefined when it cannot be one or is not JSON.
 */
export function parseAnswer(text: string): { readonly message: unknown; readonly response: ParsedResponse | undefined } | undefined {
  if (!text.includes('"result"') && !text.includes('"error"')) return undefined;
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return undefined; // not JSON: not an answer
  }
  const m = message as { id?: unknown; method?: unknown } | null;
  const isResponse = m !== null && typeof m === 'object' && !Array.isArray(m) && m.method === undefined && m.id !== undefined;
  return { message, response: isResponse ? (m as ParsedResponse) : undefined };
}

/** True when `text` may hold a failed answer: only then is it worth parsing. */
export function mayFail(text: string): boolean {
  return text.includes('"error"') || text.includes('"isError"');
}

/** The error_type of a JSON answer (one message or a batch), parsed only when it may be one. */
export function textFailure(text: string): string | undefined {
  if (!mayFail(text)) return undefined;
  try {
    return responseFailure(JSON.parse(text));
  } catch {
    return undefined; // not JSON: nothing to say about it
  }
}

/** A JSON answer larger than this is not held for parsing; it is judged by its `"isError":true` marker alone. */
export const ANSWER_KEEP_BYTES = 64 * 1024;
const MARKER = Buffer.from('"isError":true');
const MARKER_SPACED = Buffer.from('"isError": true');

/**
 * Reads a JSON answer that passes through to the client, and tells `sink` if it was an error.
 * One that fits in ANSWER_KEEP_BYTES (every JSON-RPC error in practice) is read whole and
 * comes back as its bytes, sent as they came: no stream to build, and the bytes are searched for
 * `"error"` / `"isError"` and parsed only when one is there. A larger one resolves as a stream of
 * the same bytes, judged by its `"isError":true` marker as it passes (tapJsonAnswer). An answer
 * the upstream breaks off rejects with MCPGW_ERR_STREAM_LOST.
 *
 * `length` is the answer's content-length, when it has one. An answer whose bytes have all come
 * already (a small one usually arrives with its head) is taken at once, not promised: it waits
 * for none of the body's events, and its end is still read for whoever follows it (the
 * upstream's load, the time limit, the request's slots).
 */
export function readJsonAnswer(body: Readable, sink: AnswerSink, length?: number): Buffer | Promise<Buffer | Readable> {
  if (length !== undefined && length > 0 && length <= ANSWER_KEEP_BYTES && body.readableLength === length && !body.readableFlowing && !body.destroyed) {
    // Not flowing, so read() gives all that is buffered: the whole answer.
    const whole = body.read() as Buffer;
    body.resume();
    judgeAnswer(whole, sink);
    return whole;
  }
  return readWhole(body, sink);
}

/** Tells `sink` if a JSON answer held whole was an error. */
function judgeAnswer(whole: Buffer, sink: AnswerSink): void {
  const failure = whole.includes('"error"') || whole.includes('"isError"') ? textFailure(whole.toString('utf8')) : undefined;
  if (failure !== undefined) sink.failed(failure);
}

/** readJsonAnswer for an answer still on its way: read as it comes. */
function readWhole(body: Readable, sink: AnswerSink): Promise<Buffer | Readable> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onBroken);
      body.off('close', onBroken);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size <= ANSWER_KEEP_BYTES) return;
      // Too large to hold: what came and what follows pass on as a stream.
      stop();
      body.pause();
      resolve(tapJsonAnswer(body, sink, chunks));
    };
    const onEnd = () => {
      stop();
      const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      judgeAnswer(whole, sink);
      resolve(whole);
    };
    const onBroken = (err?: Error) => {
      stop();
      // Listened to first: a body destroyed early emits an error nobody else waits for.
      body.on('error', ignore);
      body.destroy();
      reject(brokenOff(err));
    };
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onBroken);
    body.once('close', onBroken);
  });
}

/**
 * The error of an answer whose reading failed: one the upstream broke off is MCPGW_ERR_STREAM_LOST;
 * a time limit (or another gateway error) that ended it says so itself.
 */
export function brokenOff(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const message = (err as Error | undefined)?.message;
  return new GatewayError('MCPGW_ERR_STREAM_LOST', `the upstream answer broke off${message ? `: ${message}` : ''}`, { cause: err });
}

/** A content-length header's value as a number of bytes; undefined when absent or not one. */
export function contentLength(value: string | undefined): number | undefined {
  return value !== undefined && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
}

/**
 * Passes a JSON answer on byte for byte — `kept`, the chunks already read, first — and tells
 * `sink` when it ends whether it held `"isError":true`; an answer the upstream broke off is a
 * lost stream.
 */
export function tapJsonAnswer(body: Readable, sink: AnswerSink, kept: readonly Buffer[] = []): Readable {
  const tap = new JsonAnswerTap(sink, kept);
  // pipeline, not pipe: a client that goes away releases the upstream answer too. One the client
  // left (a premature close) is not ours to call.
  pipeline(body, tap, (err) => {
    if (err && (err as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE') sink.failed('MCPGW_ERR_STREAM_LOST');
  });
  return tap;
}

const ignore = (): void => {};

/** Bytes of the previous chunk kept to find a marker cut in two. */
const SEAM = MARKER_SPACED.length - 1;

class JsonAnswerTap extends Transform {
  readonly #sink: AnswerSink;
  /** The last bytes of the previous chunk. */
  #tail: Buffer | undefined;
  #toolError = false;

  constructor(sink: AnswerSink, kept: readonly Buffer[]) {
    super();
    this.#sink = sink;
    for (const chunk of kept) {
      this.#scan(chunk);
      this.push(chunk);
    }
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, next: TransformCallback): void {
    this.#scan(chunk);
    next(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.#toolError) this.#sink.failed('tool_error');
    done();
  }

  #scan(chunk: Buffer): void {
    if (this.#toolError) return;
    if (chunk.includes(MARKER) || chunk.includes(MARKER_SPACED)) {
      this.#toolError = true;
      return;
    }
    if (this.#tail) {
      const seam = Buffer.concat([this.#tail, chunk.subarray(0, SEAM)]);
      if (seam.includes(MARKER) || seam.includes(MARKER_SPACED)) {
        this.#toolError = true;
        return;
      }
    }
    // A copy: a view would keep the whole chunk alive.
    const last = chunk.length >= SEAM || !this.#tail ? chunk : Buffer.concat([this.#tail, chunk]);
    this.#tail = Buffer.from(last.subarray(Math.max(0, last.length - SEAM)));
  }
}
