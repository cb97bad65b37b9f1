import { StringDecoder } from 'node:string_decoder';

/**
 * SSE as the gateway reads it where it must look inside an upstream answer (list filtering,
 * result capture for the cache): whole events out of arbitrarily chunked bytes, and the JSON-RPC
 * message an event carries. The hub numbers and logs events with its own parser; this one keeps
 * every byte it does not rewrite exactly as it came.
 */

const EVENT_END = /\r?\n\r?\n/;

/** Cuts a byte stream into SSE events; multi-byte characters split across chunks stay whole. */
export class SseSplitter {
  readonly #decoder = new StringDecoder('utf8');
  #pending = '';

  /** Calls `onEvent` for each complete event in what arrived so far (`end` is its blank-line terminator). */
  push(chunk: Buffer | string, onEvent: (event: string, end: string) => void): void {
    this.#pending += typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
    for (let m = EVENT_END.exec(this.#pending); m; m = EVENT_END.exec(this.#pending)) {
      const event = this.#pending.slice(0, m.index);
      this.#pending = this.#pending.slice(m.index + m[0].length);
      onEvent(event, m[0]);
    }
  }

  /** Text after the last complete event, handed over (the splitter forgets it). */
  take(): string {
    const rest = this.#pending;
    this.#pending = '';
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
