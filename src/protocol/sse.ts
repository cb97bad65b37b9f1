import { StringDecoder } from 'node:string_decoder';
import { GatewayError } from '../errors.ts';

/**
 * SSE as the gateway reads it where it must look inside an upstream answer (list filtering,
 * result capture for the cache): whole events out of arbitrarily chunked bytes, and the JSON-RPC
 * message an event carries. The hub numbers and logs events with its own parser; this one keeps
 * every byte it does not rewrite exactly as it came.
 */

/**
 * A blank line: two line ends, each CRLF, LF or CR (a CR not followed by LF: one cut at a chunk's
 * end is taken for a whole line end, as the hub's reader takes it; an LF that follows in the next
 * chunk is then an empty line, which ends nothing).
 */
const LINE_END = String.raw`(?:\r\n|\r(?!\n)|\n)`;
const EVENT_END = new RegExp(LINE_END + LINE_END);
const LINE_SPLIT = /\r\n|\r|\n/;

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
  #first = true;

  /**
   * Calls `onEvent` for each complete event in what arrived so far (`end` is its blank-line
   * terminator). Throws MCPGW_ERR_UPSTREAM_PROTOCOL when an event grows past MAX_EVENT_CHARS.
   */
  push(chunk: Buffer | string, onEvent: (event: string, end: string) => void): void {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.write(chunk);
    // A BOM first is dropped, as the hub's reader drops it (else its first line is no `data:` line here, and is one there).
    if (this.#first && text.length > 0) {
      this.#first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
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

/**
 * One event's `data` lines joined (undefined when it has none) and its other lines. Joined
 * without line ends, as the hub relays an event's data (src/events/producer.ts): a message cut
 * inside a JSON string must read here as the client will get it.
 */
export function sseFields(event: string): { data: string | undefined; other: string[] } {
  const data: string[] = [];
  const other: string[] = [];
  for (const l of event.split(LINE_SPLIT)) {
    if (l.startsWith('data:')) data.push(l.slice(l.charCodeAt(5) === 32 ? 6 : 5));
    else if (l === 'data') data.push('');
    else other.push(l);
  }
  return { data: data.length === 0 ? undefined : data.join(''), other };
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

/** What an SseEventReader reports to (the hub's producer: one object, no closures per stream). */
export interface SseEventSink {
  /** An event with at least one `data` field: its `id` field ('' when it had none) and its data lines joined by '\n'. */
  sseEvent(id: string, data: string): void;
  /** A `retry` field of digits only. */
  sseRetry(ms: number): void;
}

/**
 * The longest upstream event id kept (a longer one is ignored, as one holding NUL is): the id is
 * stored with every event after it until the next id, so one long id would make each small
 * event of a hostile upstream an append of up to MAX_EVENT_CHARS to the event log.
 */
export const MAX_ID_CHARS = 1024;

const LF = 10;
const SPACE = 32;
const COLON = 58;

/**
 * The SSE events of an upstream stream, out of its bytes in any chunking, as the hub reads every
 * stream it relays: lines end with CRLF, LF or CR; `data` lines join with '\n'; `id` holding NUL
 * or longer than MAX_ID_CHARS is ignored; comments, `event` and unknown fields are skipped; a BOM
 * first is dropped. One object per stream holds the line and event under way and the bytes of a
 * UTF-8 character split across chunks (an idle stream holds nothing else). `push` is false once
 * the event under way passed `max` characters: the stream is to be given up, nothing more pushed.
 */
export class SseEventReader {
  readonly #sink: SseEventSink;
  readonly #max: number;
  /** An unfinished line. */
  #line = '';
  /** The last chunk ended with a CR (a LF next belongs to it). */
  #afterCr = false;
  /** The start of a UTF-8 character the last chunk cut. */
  #bytes: Buffer | undefined;
  #id = '';
  #data = '';
  #dataLines = 0;
  #first = true;

  constructor(sink: SseEventSink, max = MAX_EVENT_CHARS) {
    this.#sink = sink;
    this.#max = max;
  }

  push(chunk: Buffer | string): boolean {
    let text = typeof chunk === 'string' ? chunk : this.#decode(chunk);
    if (text.length === 0) return true;
    if (this.#first) {
      this.#first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    let start = 0;
    // The CR that ended the last chunk ended its line; a LF here is the rest of that CRLF.
    if (this.#afterCr) {
      this.#afterCr = false;
      if (text.charCodeAt(0) === LF) start = 1;
    }
    // Only the new text is searched: an unfinished line grows by concatenation (cheap in V8) and
    // is flattened once, when it ends, so a line that never ends costs linear time.
    let cr = text.indexOf('\r', start);
    let lf = text.indexOf('\n', start);
    while (cr !== -1 || lf !== -1) {
      const end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      if (this.#line) {
        const line = this.#line + text.slice(start, end);
        this.#line = '';
        this.#field(line, 0, line.length);
      } else {
        this.#field(text, start, end);
      }
      start = end + 1;
      if (end === cr) {
        if (start === text.length) this.#afterCr = true;
        else if (text.charCodeAt(start) === LF) start++;
      }
      if (cr !== -1 && cr < start) cr = text.indexOf('\r', start);
      if (lf !== -1 && lf < start) lf = text.indexOf('\n', start);
    }
    if (start < text.length) this.#line += start === 0 ? text : text.slice(start);
    return this.#line.length + this.#data.length <= this.#max;
  }

  #decode(chunk: Buffer): string {
    let buf = chunk;
    if (this.#bytes) {
      buf = Buffer.concat([this.#bytes, chunk]);
      this.#bytes = undefined;
    }
    const whole = completeUtf8(buf);
    if (whole < buf.length) this.#bytes = Buffer.from(buf.subarray(whole));
    return buf.toString('utf8', 0, whole);
  }

  #field(text: string, start: number, end: number): void {
    if (start === end) {
      if (this.#dataLines > 0) this.#sink.sseEvent(this.#id, this.#data);
      this.#id = '';
      this.#data = '';
      this.#dataLines = 0;
      return;
    }
    if (text.charCodeAt(start) === COLON) return;
    // Looked for within the line only: indexOf would search on to the chunk's end for each line without one (quadratic).
    let colon = start;
    while (colon < end && text.charCodeAt(colon) !== COLON) colon++;
    const name = text.slice(start, colon);
    let from = colon + 1;
    if (from < end && text.charCodeAt(from) === SPACE) from++;
    const value = from < end ? text.slice(from, end) : '';
    if (name === 'data') {
      this.#data = this.#dataLines++ === 0 ? value : `${this.#data}\n${value}`;
    } else if (name === 'id') {
      if (value.length <= MAX_ID_CHARS && !value.includes('\0')) this.#id = value;
    } else if (name === 'retry' && /^\d+$/.test(value)) {
      this.#sink.sseRetry(Number(value));
    }
  }
}

/** The length of `buf` up to the end of its last whole UTF-8 character (a character cut at the end is left out). */
function completeUtf8(buf: Buffer): number {
  const n = buf.length;
  for (let i = n - 1; i >= 0 && i >= n - 3; i--) {
    const b = buf[i]!;
    if ((b & 0xc0) === 0x80) continue;
    const size = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return i + size > n ? i : n;
  }
  return n;
}
