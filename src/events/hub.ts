import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { GatewayError, JsonRpcId } from '../errors.ts';
import type { AnswerSink } from '../protocol/answers.ts';
import { streamKey, type EventLog, type StreamInfo } from './log.ts';
import { Producer } from './producer.ts';
import { Resumption, type PreparedResume } from './resume.ts';
import type { EventTracer } from './tracing.ts';
import type { HubEventMap, HubOptions, Reopen } from './types.ts';
import { ClientWriter } from './writer.ts';
import type { EventTap } from '../upstream/types.ts';

export type { HubEventMap, HubOptions, PreparedResume, Reopen };
export type { ResumeOutcome } from './types.ts';

const HEARTBEAT_MS = 1_000;
const NODE_TTL_MS = 3_000;

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
  readonly tracer: EventTracer | undefined;
  readonly #live = new Map<string, Producer>();
  /** Each session's standalone (GET) stream produced here, for a client that reconnects without Last-Event-ID. */
  readonly #liveGet = new Map<string, Producer>();
  readonly writers = new Set<ClientWriter>();
  readonly #timers: NodeJS.Timeout[] = [];
  #closed = false;
  /** Stream ids: this process's random prefix and a counter (unique per session, no crypto per stream). */
  readonly #streamPrefix = randomBytes(6).toString('base64url');
  #streamCount = 0;
  readonly #resumption = new Resumption(this);

  /** `tracer`: traces, when on (src/events/tracing.ts). */
  constructor(log: EventLog, opts: HubOptions, tracer?: EventTracer) {
    super();
    this.log = log;
    this.opts = opts;
    this.tracer = tracer;
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

  /** Closing: followers of the log stop (src/events/resume.ts). */
  get closed(): boolean {
    return this.#closed;
  }

  /** The producer of stream `key` on this node, if any. */
  producer(key: string): Producer | undefined {
    return this.#live.get(key);
  }

  /** A stream produced here from now on: relayed, or taken over (src/events/resume.ts). */
  own(producer: Producer): void {
    this.#live.set(producer.key, producer);
    if (producer.info.kind === 'get') this.#liveGet.set(producer.key.slice(0, producer.key.indexOf(':')), producer);
  }

  /**
   * A client connection, counted until it closes (keep-alives, shutdown): a resuming client's
   * (src/events/resume.ts), or one to a stream that is only ever followed in the log, never fed
   * here directly (legacy: the 2024-11-05 session stream, src/events/session-stream.ts).
   */
  writer(res: ServerResponse, streamId: string, lastSeq: number): ClientWriter {
    return this.#writer(res, streamId, lastSeq);
  }

  /**
   * Streams an upstream SSE answer to a client through the log. The response must not have
   * been written yet; `priming` (2025-11-25 and later) sends the client an id before any event.
   * With `json`, a POST answered at once — the answer is the first event and closes the stream
   * before the priming wait is over — goes out as plain JSON instead (the client accepts both):
   * nothing to resume, nothing to log. Returns the stream's key (the pipeline's time limit ends the stream by it, src/pipeline/deadline.ts).
   * accounting: `sink` (a POST stream) is told each failed answer as it goes into the stream, and
   * when the stream is over, whether or not its client is still there to read it.
   * pipeline: `events` (the request's time limit) is told each event, each answer, and the end.
   */
  relay(opts: { session: string; server: string; kind: StreamInfo['kind']; requests: string; body: Readable; res: ServerResponse; priming: boolean; reopen: Reopen; json?: boolean; guard?: string; sink?: AnswerSink | undefined; events?: EventTap | undefined }): string {
    const streamId = this.#streamPrefix + (this.#streamCount++).toString(36);
    const key = streamKey(opts.session, streamId);
    const info: StreamInfo = { producer: this.opts.node, kind: opts.kind, requests: opts.requests, ...(opts.guard ? { guard: opts.guard } : {}) };
    const producer = new Producer(this, key, streamId, opts.server, info, 0, '', opts.reopen, true, opts.sink, opts.events);
    this.own(producer);
    const writer = this.#writer(opts.res, streamId, -1);
    if (opts.kind === 'get') writer.open();
    else if (opts.json) producer.answerInJsonIfQuick();
    producer.subscribe(writer, opts.priming);
    producer.start();
    producer.feed(opts.body);
    return key;
  }

  /**
   * pipeline: ends a stream produced here, dropping the upstream side, with the gateway's own
   * error as the answer to each of requests `ids` if given (they timed out); without one, the
   * request was cancelled. False when the stream is not produced here.
   */
  interrupt(key: string, error?: GatewayError, ids: readonly JsonRpcId[] = [null]): boolean {
    const producer = this.#live.get(key);
    if (!producer) return false;
    producer.interrupt(error, ids);
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
  prepareResume(session: string, lastEventId: string, server: string): Promise<PreparedResume> {
    return this.#resumption.prepare(session, lastEventId, server);
  }

  /**
   * A reload replaced `server`'s upstream pool: its standalone (GET) streams produced here let go
   * of the old pool's upstream stream, and their client connections end cleanly once what was
   * read is logged and written. The stream itself does not end (no end entry in the log): its
   * client comes back with Last-Event-ID, and that request takes the stream over on the new pool
   * (src/events/resume.ts), resuming the upstream's stream where the log left it. The old pool
   * then closes as soon as its calls in flight are over. Returns how many streams were handed over.
   */
  handOverStandalone(server: string): number {
    let n = 0;
    for (const producer of [...this.#liveGet.values()]) {
      if (producer.server !== server || this.#live.get(producer.key) !== producer) continue;
      producer.handOver();
      n++;
    }
    return n;
  }

  /** Replays what followed `seq`, then continues live: here, by following the log, or by taking the stream over. */
  resume(prepared: PreparedResume, res: ServerResponse, reopen: Reopen): void {
    this.#resumption.resume(prepared, res, reopen);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#timers) clearInterval(t);
    for (const p of this.#live.values()) p.stop();
    for (const w of this.writers) w.end();
  }

  /** Called by a producer when it is done. */
  release(key: string, producer: Producer): void {
    if (this.#live.get(key) === producer) this.#live.delete(key);
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
}
