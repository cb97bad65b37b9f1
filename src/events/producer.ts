import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { errorBody, GatewayError, type JsonRpcId } from '../errors.ts';
import { parseAnswer, responseFailure, type AnswerSink } from '../protocol/answers.ts';
import { SseEventReader, tooLarge, type SseEventSink } from '../protocol/sse.ts';
import type { LoggedEvent, StreamInfo } from './log.ts';
import type { TracedRequest } from './tracing.ts';
import type { ProducerHost, Reopen } from './types.ts';
import type { ClientWriter } from './writer.ts';
import { discard, drain } from '../upstream/body.ts';
import type { EventTap } from '../upstream/types.ts';
import { PollSchedule } from '../upstream/polling.ts';

/** Events read from the log at once when a client is caught up. */
export const REPLAY_PAGE = 500;
/** Events waiting for the log past which the upstream is paused. */
const PENDING_HIGH_WATER = 512;
/** How long a new stream waits for its first upstream event before its priming event goes out alone. */
const PRIMING_WAIT_MS = 5;

/** The appending side of one stream on this node. */
export class Producer implements SseEventSink {
  readonly hub: ProducerHost;
  readonly key: string;
  readonly streamId: string;
  /** The published server the stream belongs to (StreamHub.handOverStandalone). */
  readonly server: string;
  readonly info: StreamInfo;
  readonly #subscribers = new Set<ClientWriter>();
  readonly #reopen: Reopen;
  #seq: number;
  #lastUpstreamId: string;
  #pending: LoggedEvent[] = [];
  #flushing = false;
  #infoPending: boolean;
  #degraded = false;
  #ended = false;
  #body: Readable | undefined;
  #graceTimer: NodeJS.Timeout | undefined;
  /** Writers still owed their priming event (made when one is: most streams have one writer). */
  #primed: Set<ClientWriter> | undefined;
  /** POST streams: ids (JSON) of the requests not answered yet; undefined for GET streams. */
  readonly #unanswered: Set<string> | undefined;
  /**
   * When the upstream is asked again for the rest of its stream. Not bounded here: a request's
   * time limit ends a stream that gets no answer (src/pipeline/deadline.ts, via interrupt).
   */
  readonly #polls = new PollSchedule();
  /** The upstream sent an event past MAX_EVENT_CHARS: nothing more is read from it. */
  #oversized = false;
  #pollTimer: NodeJS.Timeout | undefined;
  /** The body being read came from a reopen (a GET), which the upstream may hold open after the answer. */
  #reopened = false;
  #startTimer: NodeJS.Timeout | undefined;
  /** Until the first flush: a quick single answer may still go out as JSON (see relay). */
  #jsonIfQuick = false;
  /** accounting: told what the client gets (see relay); cleared once told the stream is over. */
  #sink: AnswerSink | undefined;
  /** A response passed (streams whose request ids are not tracked: 2026-07-28). */
  #answered = false;
  /** Why the stream ended before its requests were answered, when the gateway ended it. */
  #endedBy: string | undefined;
  /** pipeline: the request's time limit, told of events, answers and the end (cleared once told the end). */
  #events: EventTap | undefined;
  /** traces: the request the stream was opened for (its log writes are that request's spans); undefined when off. */
  readonly #trace: TracedRequest | undefined;

  constructor(hub: ProducerHost, key: string, streamId: string, server: string, info: StreamInfo, seq: number, lastUpstreamId: string, reopen: Reopen, infoPending: boolean, sink?: AnswerSink, events?: EventTap) {
    this.hub = hub;
    this.key = key;
    this.streamId = streamId;
    this.server = server;
    this.info = info;
    this.#seq = seq;
    this.#lastUpstreamId = lastUpstreamId;
    this.#reopen = reopen;
    this.#infoPending = infoPending;
    this.#sink = sink;
    this.#events = events;
    this.#trace = hub.tracer?.current();
    this.#unanswered = info.kind === 'post' && info.requests ? new Set((JSON.parse(info.requests) as unknown[]).map((id) => JSON.stringify(id))) : undefined;
  }

  answerInJsonIfQuick(): void {
    this.#jsonIfQuick = this.#unanswered?.size === 1;
  }

  get subscribed(): boolean {
    return this.#subscribers.size > 0;
  }

  /** The seq of the last event handed to the log. */
  get position(): number {
    return this.#seq;
  }

  /** The first entry: it carries the stream's info and is what a priming event's id points at. */
  start(): void {
    // Not flushed alone: the first upstream event usually follows within a millisecond, and
    // start + event (+ answer + end) then cost one append and one write. A slow upstream
    // still gets its client a priming event after PRIMING_WAIT_MS.
    this.#pending.push({ seq: 0, data: '', upstreamId: '', hidden: true, end: false });
    this.#startTimer = setTimeout(() => this.#scheduleFlush(), PRIMING_WAIT_MS);
  }

  subscribe(writer: ClientWriter, priming: boolean): void {
    if (priming) (this.#primed ??= new Set()).add(writer);
    this.#add(writer);
  }

  /** A resuming client: what the log holds after its position first, then live events. */
  async attach(writer: ClientWriter): Promise<boolean> {
    writer.hold();
    this.#add(writer);
    let evicted = false;
    try {
      // Nothing to read back for a client at the current position (a standalone stream adopted).
      // Live events the writer let go meanwhile were logged before: one more read covers them.
      while (writer.lastSeq < this.#seq) {
        const events = await this.hub.log.read(this.key, writer.lastSeq, REPLAY_PAGE);
        if (await writer.replay(events)) evicted = true;
        if (writer.done || (events.length < REPLAY_PAGE && !writer.heldDropped())) break;
      }
    } catch (err) {
      // The log cannot be read (Redis away): this client cannot be caught up; it comes back
      // with Last-Event-ID. The stream itself goes on for whoever else reads it.
      this.#subscribers.delete(writer);
      this.hub.emit('resumeFailed', { key: this.key, error: (err as Error).message });
      writer.end();
      return evicted;
    } finally {
      writer.release();
    }
    if (this.#ended && this.#pending.length === 0 && !this.#flushing) writer.end();
    return evicted;
  }

  feed(body: Readable): void {
    this.#body = body;
    this.#polls.opened();
    // One reader object per body, reporting to sseEvent/sseRetry: an idle stream holds no more.
    const reader = new SseEventReader(this);
    body.on('data', (chunk: Buffer | string) => {
      if (this.#body !== body) return;
      if (reader.push(chunk)) return;
      // An event that never ends is not held: the stream is given up, not polled again for it.
      this.#oversized = true;
      body.destroy(tooLarge());
    });
    body.on('end', () => {
      if (this.#body === body) this.#upstreamEnded();
    });
    body.on('error', () => {
      if (this.#body !== body || this.#ended) return;
      this.#body = undefined;
      if (this.#oversized) return this.#fail();
      this.#poll();
    });
  }

  /** An upstream event of the body being read (src/protocol/sse.ts); ignored once that body was let go. */
  sseEvent(upstreamId: string, raw: string): void {
    const body = this.#body;
    if (!body) return;
    if (upstreamId) this.#lastUpstreamId = upstreamId;
    // An event without data is the upstream's priming or a keep-alive: position only.
    if (raw === '') {
      if (upstreamId) this.#enqueue({ seq: ++this.#seq, data: '', upstreamId, hidden: true, end: false });
      return;
    }
    const data = raw.replace(/\n/g, '');
    this.#polls.message();
    this.#events?.event();
    const note = this.#unanswered !== undefined || this.#sink !== undefined || this.#events !== undefined ? this.#noteAnswer(data) : 'other';
    // A response to no request of this stream is not the client's (and must not end its call).
    if (note === 'stray') return;
    const answered = note === 'answer' && this.#unanswered?.size === 0;
    this.#enqueue({ seq: ++this.#seq, data, upstreamId: this.#lastUpstreamId, hidden: false, end: false });
    if (answered) {
      // Every request is answered: the stream ends now, in the same batch as the answer
      // (one append, one write), without waiting for the upstream to close its side. A
      // resumed stream may be held open after it (the SDK does): that one is let go.
      this.#body = undefined;
      if (this.#reopened) discard(body);
      else drain(body);
      this.finish();
    }
  }

  sseRetry(ms: number): void {
    this.#polls.retry(ms);
  }

  /**
   * The upstream closed its stream cleanly. A POST stream whose requests are all answered is
   * done. Otherwise the upstream asks to be polled (2025-11-25 lets a server close a stream and
   * have the client reconnect with Last-Event-ID): the gateway reconnects for the client, after
   * the upstream's `retry:`, so the client's own stream simply goes on.
   */
  #upstreamEnded(): void {
    if (this.info.kind === 'post' && this.#unanswered?.size === 0) return this.finish();
    this.#body = undefined;
    this.#poll();
  }

  /** Asks the upstream for the rest of its stream when the schedule says (src/upstream/polling.ts). */
  #poll(): void {
    const wait = this.#polls.next();
    if (wait === undefined) return this.#fail();
    this.#pollTimer = setTimeout(() => void this.continueUpstream(), wait);
    this.#pollTimer.unref();
  }

  /**
   * Marks a request answered when `data` is its response (parsed only when it can be one; the
   * stream ends on its last answer, so this is the parse of the final event(s)), and tells the
   * sink when it failed: `answer`, `stray` (a response to no request of this stream) or `other`.
   */
  #noteAnswer(data: string): 'answer' | 'stray' | 'other' {
    const m = parseAnswer(data)?.response;
    if (m === undefined) return 'other';
    // An answer to an id this POST did not send, or sent already: the upstream's mistake (or worse).
    // An error with id null (the upstream could not read a request's id) answers no request and
    // cannot pose as one's answer: the client sees it, the requests stay unanswered.
    if (m.id === null && 'error' in m && this.#unanswered !== undefined && !this.#unanswered.has('null')) return 'other';
    if (this.#unanswered !== undefined && !this.#unanswered.delete(JSON.stringify(m.id))) return 'stray';
    this.#answered = true;
    this.#events?.answered(m.id);
    if (this.#sink) {
      const failure = responseFailure(m);
      if (failure !== undefined) this.#sink.failed(failure);
    }
    return 'answer';
  }

  /**
   * The upstream stream broke, ended early, or its producer died: resume the upstream, or end
   * (with an error for what is unanswered) when it cannot be — no event id to resume at, or the
   * upstream refused.
   */
  async continueUpstream(): Promise<void> {
    if (this.#ended) return;
    const canResume = this.info.kind === 'get' || this.#lastUpstreamId !== '';
    const body = canResume ? await this.#reopen(this.#lastUpstreamId, this.info).catch(() => undefined) : undefined;
    if (this.#ended) {
      if (body) discard(body);
      return;
    }
    if (!body) return this.#fail();
    this.#reopened = true;
    this.feed(body);
  }

  finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#graceTimer);
    clearTimeout(this.#pollTimer);
    this.#endEvents();
    this.#enqueue({ seq: ++this.#seq, data: '', upstreamId: this.#lastUpstreamId, hidden: true, end: true });
  }

  /** See StreamHub.interrupt: the upstream stream is dropped, `error` is the last event(s). */
  interrupt(error: GatewayError | undefined, ids: readonly JsonRpcId[]): void {
    if (this.#ended) return;
    const body = this.#body;
    // Cleared first: the dropped body must not look like a broken stream to resume.
    this.#body = undefined;
    if (body) discard(body);
    if (error) {
      this.#sink?.failed(error.code);
      for (const id of ids) this.#enqueue({ seq: ++this.#seq, data: errorBody(error, id), upstreamId: this.#lastUpstreamId, hidden: false, end: false });
    }
    this.#endedBy = error?.code ?? 'cancelled';
    this.finish();
  }

  /** Gateway shutdown: stop reading the upstream; clients resume on another replica. */
  stop(): void {
    this.#ended = true;
    clearTimeout(this.#pollTimer);
    if (this.#body) discard(this.#body);
    this.#endedBy = 'MCPGW_ERR_SHUTTING_DOWN';
    this.#endEvents();
    this.#settle();
    this.hub.release(this.key, this);
  }

  /**
   * See StreamHub.handOverStandalone: production stops here as on shutdown, and the clients'
   * connections end once what is pending was logged and written (they resume with Last-Event-ID).
   */
  handOver(): void {
    clearTimeout(this.#graceTimer);
    this.stop();
    // A flush under way (or scheduled now for what is pending) ends the writers when it is done.
    if (this.#pending.length > 0) this.#scheduleFlush();
    else if (!this.#flushing) for (const w of this.#subscribers) w.end();
  }

  /**
   * accounting: the stream is over here. Its requests unanswered mean it ended early: cut off
   * by the gateway (`#endedBy`), or a stream lost.
   */
  #settle(): void {
    const sink = this.#sink;
    if (!sink) return;
    this.#sink = undefined;
    const answered = this.#unanswered ? this.#unanswered.size === 0 : this.#answered;
    sink.settled(answered ? undefined : (this.#endedBy ?? 'MCPGW_ERR_STREAM_LOST'));
  }

  #endEvents(): void {
    const events = this.#events;
    this.#events = undefined;
    events?.ended();
  }

  #fail(): void {
    if (this.#unanswered) {
      const err = new GatewayError('MCPGW_ERR_STREAM_LOST');
      if (this.#unanswered.size > 0) this.#sink?.failed(err.code);
      for (const id of [...this.#unanswered].map((k) => JSON.parse(k) as string | number)) {
        this.#enqueue({ seq: ++this.#seq, data: errorBody(err, id), upstreamId: this.#lastUpstreamId, hidden: false, end: false });
      }
    }
    this.finish();
  }

  #add(writer: ClientWriter): void {
    clearTimeout(this.#graceTimer);
    this.#subscribers.add(writer);
    writer.onClose = () => {
      this.#subscribers.delete(writer);
      if (this.#subscribers.size === 0 && this.info.kind === 'get' && !this.#ended) {
        // A standalone stream nobody reads is kept for a while (the client may resume), then closed.
        this.#graceTimer = setTimeout(() => {
          if (this.#subscribers.size === 0) {
            if (this.#body) discard(this.#body);
            this.finish();
          }
        }, this.hub.opts.detachedGraceMs);
        this.#graceTimer.unref();
      }
    };
  }

  #enqueue(e: LoggedEvent): void {
    this.#pending.push(e);
    if (this.#pending.length > PENDING_HIGH_WATER) this.#body?.pause();
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    clearTimeout(this.#startTimer);
    // Not kept once fired: an idle stream would hold the spent timer.
    this.#startTimer = undefined;
    if (!this.#flushing) {
      this.#flushing = true;
      queueMicrotask(() => void this.#flush());
    }
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending;
      this.#pending = [];
      if (this.#jsonIfQuick) {
        this.#jsonIfQuick = false;
        if (this.#answerInJson(batch)) continue;
      }
      if (!this.#degraded) {
        const started = performance.now();
        try {
          // A POST stream whose end goes to a connected client is kept only briefly.
          const ended = this.info.kind === 'post' && this.#subscribers.size > 0 && batch.at(-1)!.end;
          await this.hub.log.append(this.key, batch, this.#infoPending ? this.info : undefined, ended ? this.hub.opts.endedTtlMs : undefined, this.#trace);
          this.#infoPending = false;
          this.hub.emit('append', { seconds: (performance.now() - started) / 1000, events: batch.length });
        } catch (err) {
          // Without the log the stream goes on, unresumable: events are sent without ids.
          this.#degraded = true;
          this.hub.emit('degraded', { key: this.key, error: (err as Error).message });
        }
      }
      this.#deliver(batch);
    }
    this.#flushing = false;
    this.#body?.resume();
    if (this.#ended) {
      this.#settle();
      this.hub.release(this.key, this);
      for (const w of this.#subscribers) w.end();
    }
  }

  /** The first batch holds the whole stream — one message, the answer, then the end: JSON it is. */
  #answerInJson(batch: readonly LoggedEvent[]): boolean {
    if (!batch.at(-1)!.end || this.#unanswered!.size > 0) return false;
    let answer: string | undefined;
    for (const e of batch) {
      if (!e.data || e.hidden) continue;
      if (answer !== undefined) return false;
      answer = e.data;
    }
    if (answer === undefined) return false;
    for (const w of this.#subscribers) w.json(answer);
    return true;
  }

  #deliver(batch: LoggedEvent[]): void {
    // The writes of one batch leave in one syscall: Node corks a response's socket for the
    // rest of the tick on its first write (corking by hand here would undo that).
    for (const w of this.#subscribers) {
      if (this.#primed?.delete(w) && !this.#degraded) w.priming(0, this.hub.opts.retryMs);
      for (const e of batch) {
        if (!this.#degraded) w.write(e);
        else if (e.data) w.writeUnlogged(e.data);
        else if (e.end) w.end();
      }
    }
  }
}
