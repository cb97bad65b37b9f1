import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { errorBody, GatewayError, type JsonRpcId } from '../errors.ts';
import { responseFailure, type AnswerSink } from '../protocol/answers.ts';
import { SseEventReader, tooLarge, type SseEventSink } from '../protocol/sse.ts';
import { streamKey, type EventLog, type LoggedEvent, type StreamInfo } from './log.ts';
import { ClientWriter } from './writer.ts';
import { discard, drain } from '../upstream/body.ts';
import { PollSchedule } from '../upstream/polling.ts';

export interface HubOptions {
  /** This gateway process; producers are named by it. */
  readonly node: string;
  readonly retryMs: number;
  readonly keepAliveMs: number;
  readonly maxBuffer: number;
  readonly detachedGraceMs: number;
  /** Retention of a POST stream whose end reached a connected client (it will hardly resume). */
  readonly endedTtlMs: number;
}

export type ResumeOutcome = 'hit' | 'miss' | 'evicted' | 'upstream';

export interface HubEventMap {
  resume: [{ outcome: ResumeOutcome }];
  append: [{ seconds: number; events: number }];
  degraded: [{ key: string; error: string }];
  resumeFailed: [{ key: string; error: string }];
}

/**
 * resilience: sees every upstream message a stream relays (the cache invalidates on list_changed
 * and resources/updated, timeouts reset on progress) and every stream's end. Called on the hot
 * path: an observer returns at once for what it does not care about.
 */
export interface StreamObserver {
  /** One upstream message (a line of JSON) on stream `key` (`<session>:<stream>`), before it is logged. */
  message(key: string, data: string): void;
  /** The stream `key` ended here (answered, failed, or handed to no one at shutdown). */
  end(key: string): void;
}

/**
 * Opens the upstream side of a stream again after it broke, ended before its answer (the
 * upstream has its clients poll, src/upstream/polling.ts) or its producer died: for HTTP, a GET
 * with the upstream's Last-Event-ID (its resumption); undefined when that cannot be done.
 */
export type Reopen = (upstreamEventId: string, info: StreamInfo) => Promise<Readable | undefined>;

/** A resumption checked and ready: the stream, the client's position, and (when read already) the first page to replay. */
export interface PreparedResume {
  readonly key: string;
  readonly streamId: string;
  readonly seq: number;
  readonly info: StreamInfo;
  readonly page?: LoggedEvent[];
}

const HEARTBEAT_MS = 1_000;
const NODE_TTL_MS = 3_000;
const FOLLOW_BLOCK_MS = 1_000;
const REPLAY_PAGE = 500;
/** Events waiting for the log past which the upstream is paused. */
const PENDING_HIGH_WATER = 512;
/** How long a new stream waits for its first upstream event before its priming event goes out alone. */
const PRIMING_WAIT_MS = 5;

/**
 * Every SSE stream the gateway sends goes through here: each upstream event is numbered,
 * appended to the event log, and only then written to the client, so any event id a client
 * holds can be resumed — on this replica or another — with `Last-Event-ID`. The producer of a
 * stream is decoupled from its client: a client that drops does not stop the upstream stream
 * being logged, and one that resumes elsewhere follows the log; if the producing replica died,
 * a resuming replica takes the stream over and resumes the upstream at its last event id.
 */
export class StreamHub extends EventEmitter<HubEventMap> {
  readonly log: EventLog;
  readonly opts: HubOptions;
  readonly #live = new Map<string, Producer>();
  /** Each session's standalone (GET) stream produced here, for a client that reconnects without Last-Event-ID. */
  readonly #liveGet = new Map<string, Producer>();
  readonly writers = new Set<ClientWriter>();
  readonly #timers: NodeJS.Timeout[] = [];
  #closed = false;
  observer: StreamObserver | undefined;
  /** Stream ids: this process's random prefix and a counter (unique per session, no crypto per stream). */
  readonly #streamPrefix = randomBytes(6).toString('base64url');
  #streamCount = 0;

  constructor(log: EventLog, opts: HubOptions) {
    super();
    this.log = log;
    this.opts = opts;
    const beat = () => void this.log.heartbeat(opts.node, NODE_TTL_MS).catch(() => {});
    beat();
    this.#timers.push(setInterval(beat, HEARTBEAT_MS));
    this.#timers.push(
      setInterval(() => {
        const now = Date.now();
        for (const w of this.writers) w.keepAlive(now, opts.keepAliveMs);
      }, Math.max(50, Math.floor(opts.keepAliveMs / 2))),
    );
    for (const t of this.#timers) t.unref();
  }

  get liveStreams(): number {
    return this.#live.size;
  }

  /**
   * legacy: a client connection to a stream that is only ever followed in the log, never fed
   * here directly (the 2024-11-05 session stream, src/events/session-stream.ts).
   */
  writer(res: ServerResponse, streamId: string, lastSeq: number): ClientWriter {
    return this.#writer(res, streamId, lastSeq);
  }

  /**
   * Streams an upstream SSE answer to a client through the log. The response must not have
   * been written yet; `priming` (2025-11-25 and later) sends the client an id before any event.
   * With `json`, a POST answered at once — the answer is the first event and closes the stream
   * before the priming wait is over — goes out as plain JSON instead (the client accepts both):
   * nothing to resume, nothing to log. Returns the stream's key (as the observer sees it).
   * accounting: `sink` (a POST stream) is told each failed answer as it goes into the stream, and
   * when the stream is over, whether or not its client is still there to read it.
   */
  relay(opts: { session: string; kind: StreamInfo['kind']; requests: string; body: Readable; res: ServerResponse; priming: boolean; reopen: Reopen; json?: boolean; guard?: string; sink?: AnswerSink | undefined }): string {
    const streamId = this.#streamPrefix + (this.#streamCount++).toString(36);
    const key = streamKey(opts.session, streamId);
    const info: StreamInfo = { producer: this.opts.node, kind: opts.kind, requests: opts.requests, ...(opts.guard ? { guard: opts.guard } : {}) };
    const producer = new Producer(this, key, streamId, info, 0, '', opts.reopen, true, opts.sink);
    this.#live.set(key, producer);
    if (opts.kind === 'get') this.#liveGet.set(opts.session, producer);
    const writer = this.#writer(opts.res, streamId, -1);
    if (opts.kind === 'get') writer.open();
    else if (opts.json) producer.answerInJsonIfQuick();
    producer.subscribe(writer, opts.priming);
    producer.start();
    producer.feed(opts.body);
    return key;
  }

  /**
   * resilience: ends a stream produced here, dropping the upstream side, with the gateway's own
   * error as the answer to request `id` if given (a request timed out); without one, the request
   * was cancelled. False when the stream is not produced here.
   */
  interrupt(key: string, error?: GatewayError, id: JsonRpcId = null): boolean {
    const producer = this.#live.get(key);
    if (!producer) return false;
    producer.interrupt(error, id);
    return true;
  }

  /**
   * This session's standalone (GET) stream on this replica: `busy` while a client reads it,
   * `detached` while it is still read from the upstream though its client left (a GET without
   * Last-Event-ID then adopts it), `none` otherwise.
   */
  standaloneState(session: string): 'busy' | 'detached' | 'none' {
    const producer = this.#liveGet.get(session);
    if (!producer || !this.#live.has(producer.key)) return 'none';
    return producer.subscribed ? 'busy' : 'detached';
  }

  /** Hands a detached standalone stream to a new connection, from the current position on. */
  adoptStandalone(session: string, res: ServerResponse, priming: boolean): void {
    const producer = this.#liveGet.get(session)!;
    const writer = this.#writer(res, producer.streamId, producer.position);
    writer.open();
    if (priming) writer.priming(producer.position, this.opts.retryMs);
    void producer.attach(writer);
  }

  /**
   * Checks a `Last-Event-ID` for this session before anything is written: the stream must be
   * known here or in the log. Throws MCPGW_ERR_EVENTS_GONE otherwise.
   */
  async prepareResume(session: string, lastEventId: string): Promise<PreparedResume> {
    const dot = lastEventId.lastIndexOf('.');
    const streamId = lastEventId.slice(0, dot);
    const seq = Number(lastEventId.slice(dot + 1));
    if (dot <= 0 || !Number.isSafeInteger(seq) || seq < 0 || !/^[A-Za-z0-9_-]+$/.test(streamId)) {
      this.emit('resume', { outcome: 'miss' });
      throw new GatewayError('MCPGW_ERR_EVENTS_GONE', 'Last-Event-ID is not an event id this gateway issued');
    }
    const key = streamKey(session, streamId);
    const local = this.#live.get(key)?.info;
    // Produced elsewhere: its info and the first page to replay come in one round trip.
    const opened = local ? undefined : await this.log.open(key, seq, REPLAY_PAGE).catch(() => undefined);
    const info = local ?? opened?.info;
    if (!info) {
      this.emit('resume', { outcome: 'miss' });
      throw new GatewayError('MCPGW_ERR_EVENTS_GONE', this.log.healthy() ? 'the stream is unknown or expired' : 'the event log is unavailable');
    }
    return { key, streamId, seq, info, page: opened?.events };
  }

  /** Replays what followed `seq`, then continues live: here, by following the log, or by taking the stream over. */
  resume(prepared: PreparedResume, res: ServerResponse, reopen: Reopen): void {
    const writer = this.#writer(res, prepared.streamId, prepared.seq);
    writer.open();
    const local = this.#live.get(prepared.key);
    if (local) {
      void local.attach(writer).then((evicted) => this.emit('resume', { outcome: evicted ? 'evicted' : 'hit' }));
      return;
    }
    void this.#follow(prepared.key, prepared.streamId, prepared.info, writer, reopen, prepared.page);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    for (const p of this.#live.values()) p.stop();
    for (const w of this.writers) w.end();
  }

  /** Called by a producer when it is done. */
  release(key: string, producer: Producer): void {
    if (this.#live.get(key) === producer) {
      this.#live.delete(key);
      this.observer?.end(key);
    }
    const session = key.slice(0, key.indexOf(':'));
    if (this.#liveGet.get(session) === producer) this.#liveGet.delete(session);
  }

  #writer(res: ServerResponse, streamId: string, lastSeq: number): ClientWriter {
    const w = new ClientWriter(res, streamId, lastSeq, this.opts.maxBuffer);
    this.writers.add(w);
    // 'close' comes once: `on` spares the wrapper `once` would allocate per stream.
    res.on('close', () => this.writers.delete(w));
    return w;
  }

  async #follow(key: string, streamId: string, info: StreamInfo, writer: ClientWriter, reopen: Reopen, page: LoggedEvent[] | undefined): Promise<void> {
    let follower;
    let outcome: ResumeOutcome = 'hit';
    try {
      // Replay what the log holds after the client's position (its first page may be read already).
      for (let first = page; ; first = undefined) {
        const events = first ?? (await this.log.read(key, writer.lastSeq, REPLAY_PAGE));
        if (await writer.replay(events)) outcome = 'evicted';
        if (writer.done) return void this.emit('resume', { outcome });
        if (events.length < REPLAY_PAGE) break;
      }
      // Then follow the producer, wherever it is, until the stream ends.
      follower = this.log.follower(key);
      while (!writer.done && !this.#closed) {
        const events = await follower.next(writer.lastSeq, FOLLOW_BLOCK_MS);
        await writer.replay(events);
        if (events.length > 0) continue;
        const current = await this.log.info(key);
        if (!current) break;
        const local = this.#live.get(key);
        if (local) {
          const evicted = await local.attach(writer);
          this.emit('resume', { outcome: evicted ? 'evicted' : outcome });
          return;
        }
        if (current.producer === this.opts.node || !(await this.log.alive(current.producer))) {
          if (await this.log.claim(key, current.producer, this.opts.node)) {
            outcome = 'upstream';
            await this.#takeover(key, streamId, current, writer, reopen);
            return;
          }
        }
      }
      this.emit('resume', { outcome });
      writer.end();
    } catch (err) {
      // The log failed mid-resume: end the response; the client resumes again.
      this.emit('resume', { outcome: 'miss' });
      this.emit('resumeFailed', { key, error: (err as Error).message });
      writer.end();
    } finally {
      follower?.close();
    }
  }

  async #takeover(key: string, streamId: string, info: StreamInfo, writer: ClientWriter, reopen: Reopen): Promise<void> {
    const last = await this.log.last(key);
    if (last?.end) {
      // It ended after all (the end landed between our reads): nothing to take over.
      await writer.replay([last]);
      writer.end();
      return;
    }
    const seq = last?.seq ?? 0;
    const producer = new Producer(this, key, streamId, { ...info, producer: this.opts.node }, seq, last?.upstreamId ?? '', reopen, false);
    this.#live.set(key, producer);
    if (info.kind === 'get') this.#liveGet.set(key.slice(0, key.indexOf(':')), producer);
    this.emit('resume', { outcome: 'upstream' });
    await producer.attach(writer);
    await producer.continueUpstream();
  }
}

/** The appending side of one stream on this node. */
class Producer implements SseEventSink {
  readonly hub: StreamHub;
  readonly key: string;
  readonly streamId: string;
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
   * time limit ends a stream that gets no answer (src/resilience/calls.ts, via interrupt).
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

  constructor(hub: StreamHub, key: string, streamId: string, info: StreamInfo, seq: number, lastUpstreamId: string, reopen: Reopen, infoPending: boolean, sink?: AnswerSink) {
    this.hub = hub;
    this.key = key;
    this.streamId = streamId;
    this.info = info;
    this.#seq = seq;
    this.#lastUpstreamId = lastUpstreamId;
    this.#reopen = reopen;
    this.#infoPending = infoPending;
    this.#sink = sink;
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
    const note = this.#unanswered !== undefined || this.#sink !== undefined ? this.#noteAnswer(data) : 'other';
    // A response to no request of this stream is not the client's (and must not end its call).
    if (note === 'stray') return;
    const answered = note === 'answer' && this.#unanswered?.size === 0;
    this.hub.observer?.message(this.key, data);
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
    if (!data.includes('"result"') && !data.includes('"error"')) return 'other';
    let m: { id?: unknown; method?: unknown } | null;
    try {
      m = JSON.parse(data) as typeof m;
    } catch {
      return 'other'; // not JSON: not an answer
    }
    if (m === null || typeof m !== 'object' || m.method !== undefined || m.id === undefined) return 'other';
    // An answer to an id this POST did not send, or sent already: the upstream's mistake (or worse).
    if (this.#unanswered !== undefined && !this.#unanswered.delete(JSON.stringify(m.id))) return 'stray';
    this.#answered = true;
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
    this.#enqueue({ seq: ++this.#seq, data: '', upstreamId: this.#lastUpstreamId, hidden: true, end: true });
  }

  /** See StreamHub.interrupt: the upstream stream is dropped, `error` is the last event. */
  interrupt(error: GatewayError | undefined, id: JsonRpcId): void {
    if (this.#ended) return;
    const body = this.#body;
    // Cleared first: the dropped body must not look like a broken stream to resume.
    this.#body = undefined;
    if (body) discard(body);
    if (error) {
      this.#sink?.failed(error.code);
      this.#enqueue({ seq: ++this.#seq, data: errorBody(error, id), upstreamId: this.#lastUpstreamId, hidden: false, end: false });
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
    this.#settle();
    this.hub.release(this.key, this);
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
          await this.hub.log.append(this.key, batch, this.#infoPending ? this.info : undefined, ended ? this.hub.opts.endedTtlMs : undefined);
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
