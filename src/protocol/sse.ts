import { StringDecoder } from 'node:string_decoder';
import { GatewayError } from '../errors.ts';

/**
 * SSE as the gateway reads it where it must look inside an upstream answer (list filtering,
 * result capture for the cache): whole events out of arbitrarily chunked bytes, and the JSON-RPC
 * message an event carries. The hub numbers and logs events with its own parser; this one keeps
 * every byte it does not rewrite exactly as it came.
 */

const EVENT_END = /\r?\n\r?\n/;

/**
 * The largest SSE event the gateway reads from an upstream, as for a JSON answer (16 MiB of
 * characters): an event that never ends would otherwise be held in memory whole, by any parser.
 */
export const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/** The characters of the SSE event under way, across chunks; `ok` is false once it passed MAX_EVENT_CHARS. */
export class EventSize {
  readonly #max: number;
  #current = 0;
  /** The end of the previous chunk, where a blank line may begin. */
  #tail = '';

  constructor(max = MAX_EVENT_CHARS) {
    this.#max = max;
  }

  ok(chunk: string): boolean {
    const text = this.#tail + chunk;
    const end = Math.max(after(text, '\n\n'), after(text, '\r\r'), after(text, '\n\r\n'));
    this.#current = end >= 0 ? text.length - end : this.#current + chunk.length;
    this.#tail = text.slice(-2);
    return this.#current <= this.#max;
  }
}

function after(text: string, blank: string): number {
  const i = text.lastIndexOf(blank);
  return i < 0 ? -1 : i + blank.length;
}

/** Cuts a byte stream into SSE events; multi-byte characters split across chunks stay whole. */
export class SseSplitter {
  readonly #decoder = new StringDecoder('utf8');
  /** The event under way, as it came (joined once it is complete: linear however it is chunked). */
  #parts: string[] = [];
  #size = 0;
  /** Its last characters, where a terminator may have begun (one is at most 4 characters). */
  #tail = '';

  /**
   * Calls `onEvent` for each complete event in what arrived so far (`end` is its blank-line
   * terminator). Throws MCPGW_ERR_UPSTREAM_PROTOCOL when an event grows past MAX_EVENT_CHARS.
   */
  push(chunk: Buffer | string, onEvent: (event: string, end: string) => void): void {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
    for (;;) {
      const m = EVENT_END.exec(this.#tail + text);
      if (!m) break;
      const full = this.#parts.join('') + text;
      const at = this.#size - this.#tail.length + m.index;
      text = full.slice(at + m[0].length);
      this.#parts = [];
      this.#size = 0;
      this.#tail = '';
      onEvent(full.slice(0, at), m[0]);
    }
    if (text.length === 0) return;
    this.#parts.push(text);
    this.#size += text.length;
    this.#tail = (this.#tail + text).slice(-3);
    if (this.#size > MAX_EVENT_CHARS) throw tooLarge();
  }

  /** Text after the last complete event, handed over (the splitter forgets it). */
  take(): string {
    const rest = this.#parts.join('');
    this.#parts = [];
    this.#size = 0;
    this.#tail = '';
    return rest;
  }

  /** Decodes without splitting (once nothing more needs to be looked at). */
  decode(chunk: Buffer | string): string {
    return typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
  }

  /** What is left at the end of the stream. */
  end(): string {
    return this.take() + this.#decoder.end();
  }
}

/** One event's `data:` lines joined (undefined when it has none) and its other lines. */
export function sseFields(event: string): { data: string | undefined; other: string[] } {
  const data: string[] = [];
  const other: string[] = [];
  for (const l of event.split(/\r?\n/)) {
    if (l.startsWith('data:')) data.push(l.slice(l.charCodeAt(5) === 32 ? 6 : 5));
    else other.push(l);
  }
  return { data: data.length === 0 ? undefined : data.join('\n'), other };
}

/** The JSON value an event's data carries; undefined when it has no data or the data is not JSON. */
export function sseMessage(event: string): { msg: unknown; other: string[] } | undefined {
  const { data, other } = sseFields(event);
  if (data === undefined) return undefined;
  try {
    return { msg: JSON.parse(data) as unknown, other };
  } catch {
    return undefined;
  }
}

export function tooLarge(): GatewayError {
  return new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `an SSE event larger than ${MAX_EVENT_CHARS / 1024 / 1024} MiB`);
}
