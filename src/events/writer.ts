import type { ServerResponse } from 'node:http';
import { SSE_HEADERS } from '../upstream/types.ts';
import type { LoggedEvent } from './log.ts';

/**
 * One client's SSE connection. Writes each event once, in order (anything at or below the last
 * seq written is skipped, so replay and live delivery can overlap safely), and bounds what a slow
 * reader may leave buffered: past `maxBuffer` bytes the connection is cut and the client resumes
 * from the log.
 */
export class ClientWriter {
  readonly res: ServerResponse;
  readonly streamId: string;
  lastSeq: number;
  lastWriteAt = Date.now();
  #held: LoggedEvent[] | undefined;
  #heldBytes = 0;
  /** Held events were let go since `heldDropped` was last asked: the replay must read them from the log. */
  #dropped = false;
  #closed = false;
  readonly #maxBuffer: number;
  /** Something was written in this turn of the event loop (the slow-reader check is done). */
  #inTurn = false;
  onClose: (() => void) | undefined;

  constructor(res: ServerResponse, streamId: string, lastSeq: number, maxBuffer: number) {
    this.res = res;
    this.streamId = streamId;
    this.lastSeq = lastSeq;
    this.#maxBuffer = maxBuffer;
    // 'close' comes once: `on` spares the wrapper `once` would allocate per stream.
    res.on('close', () => {
      this.#closed = true;
      this.onClose?.();
    });
  }

  get closed(): boolean {
    return this.#closed || this.res.destroyed;
  }

  /** Nothing more will be written: the stream ended, or the client left. */
  get done(): boolean {
    return this.closed || this.res.writableEnded;
  }

  /**
   * Holds live events (`write`) while a replay from the log (`replay`) is written first, at most
   * `maxBuffer` bytes of them: a replay goes at the client's pace and may never catch up with a
   * fast stream, so what is held past that is let go — it is in the log already, and the replay
   * reads it there (see `heldDropped`).
   */
  hold(): void {
    this.#held ??= [];
  }

  /** Writes the held live events after the replay; those the replay already covered are skipped. */
  release(): void {
    const held = this.#held;
    this.#held = undefined;
    this.#heldBytes = 0;
    this.#dropped = false;
    if (held) for (const e of held) this.#emit(e);
  }

  /** True if held events were let go since the last call: the replay is not over before it read the log again. */
  heldDropped(): boolean {
    const dropped = this.#dropped;
    this.#dropped = false;
    return dropped;
  }

  /** A live event (logged already): written now, or held while a replay runs. */
  write(e: LoggedEvent): void {
    if (!this.#held) return this.#emit(e);
    this.#held.push(e);
    this.#heldBytes += e.data.length;
    if (this.#heldBytes > this.#maxBuffer) {
      this.#held = [];
      this.#heldBytes = 0;
      this.#dropped = true;
    }
  }

  /**
   * Events read back from the log: written even while live events are held, at the pace the
   * client reads them (a backlog larger than `maxBuffer` must not cut the very connection that
   * is catching up on it). Resolves when written, or when the client left, with whether the page
   * starts past the client's next event: the ones between were trimmed from the log (evicted).
   */
  async replay(events: readonly LoggedEvent[]): Promise<boolean> {
    const evicted = events.length > 0 && events[0]!.seq > this.lastSeq + 1 && this.lastSeq >= 0;
    for (const e of events) {
      this.#emit(e, true);
      if (this.res.writableNeedDrain && !this.closed) await drained(this.res);
      if (this.closed) break;
    }
    return evicted;
  }

  #emit(e: LoggedEvent, paced = false): void {
    if (this.closed || e.seq <= this.lastSeq) return;
    this.lastSeq = e.seq;
    if (e.data && !e.hidden) this.#send(`id: ${this.streamId}.${e.seq}\nevent: message\ndata: ${e.data}\n\n`, paced);
    if (e.end) this.end();
  }

  /** A message that could not be logged: sent without an id (it cannot be resumed). */
  writeUnlogged(data: string): void {
    if (!this.closed) this.#send(`event: message\ndata: ${data}\n\n`);
  }

  /** Sends the SSE response head now (a GET stream: the client waits for it before any event). */
  open(): void {
    if (!this.res.headersSent) {
      this.res.writeHead(200, SSE_HEADERS);
      this.res.flushHeaders();
    }
  }

  /**
   * The whole answer came at once: sent as one `application/json` response (the client accepts
   * both), with no stream, ids or log entry — like an upstream that answers in JSON.
   */
  json(data: string): void {
    if (this.closed || this.res.headersSent) return;
    this.lastWriteAt = Date.now();
    this.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
    this.res.end(data);
  }

  /** The 2025-11-25 priming event: an id to resume from (`seq`) before any message, and the reconnect delay. */
  priming(seq: number, retryMs: number): void {
    this.#send(`id: ${this.streamId}.${seq}\nretry: ${retryMs}\ndata: \n\n`);
  }

  keepAlive(now: number, idleMs: number): void {
    if (!this.closed && now - this.lastWriteAt >= idleMs) this.#send(': keep-alive\n\n');
  }

  end(): void {
    if (this.closed || this.res.writableEnded) return;
    if (!this.res.headersSent) this.res.writeHead(200, SSE_HEADERS);
    this.res.end();
  }

  #send(chunk: string, paced = false): void {
    if (this.closed || this.res.writableEnded) return;
    if (!this.res.headersSent) this.res.writeHead(200, SSE_HEADERS);
    if (!this.#inTurn) {
      // A slow reader is one that left more than maxBuffer unread from earlier turns of the event
      // loop (checked at a turn's first write): one burst of the upstream, however large, does
      // not cut a client that keeps up.
      if (!paced && this.res.writableLength > this.#maxBuffer) {
        this.res.destroy();
        return;
      }
      this.#inTurn = true;
      setImmediate(() => (this.#inTurn = false));
    }
    this.lastWriteAt = Date.now();
    this.res.write(chunk);
  }
}

/** Resolves when `res` has room again, or is gone. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}
