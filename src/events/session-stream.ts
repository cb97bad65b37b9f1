import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { SSE_HEADERS } from '../upstream/types.ts';
import type { StreamHub } from './hub.ts';
import type { LoggedEvent, NewEvent, StreamInfo } from './log.ts';
import type { TracedRequest } from './tracing.ts';

const FOLLOW_BLOCK_MS = 1_000;
const REPLAY_PAGE = 500;

/**
 * legacy: the one SSE stream of a 2024-11-05 HTTP+SSE session. A Streamable HTTP stream has one
 * producer; this one is fed by every upstream answer of the session, each handled on whichever
 * replica its POST reached. So every replica appends through a SessionFeed (the log numbers the
 * events, atomically), and a client connection only ever follows the log: what it reads, and
 * where it resumes with Last-Event-ID, is the same on every replica.
 */
export class SessionFeed {
  readonly #hub: StreamHub;
  readonly key: string;
  #pending: NewEvent[] = [];
  #flushing: Promise<void> | undefined;
  #failed = false;
  /** traces: the request this feed is made for (its log writes are that request's spans); undefined when off. */
  readonly #trace: TracedRequest | undefined;

  constructor(hub: StreamHub, key: string) {
    this.#hub = hub;
    this.key = key;
    this.#trace = hub.tracer?.current();
  }

  /** Creates the stream (or takes it over): `info` names this node as its owner. */
  static async open(hub: StreamHub, key: string, info: StreamInfo): Promise<number> {
    return hub.log.appendNext(key, [{ data: '', upstreamId: '', hidden: true, end: false }], info, hub.tracer?.current());
  }

  /** One JSON-RPC message for the client; `upstreamId` is the upstream's event id, if any. */
  push(data: string, upstreamId = ''): void {
    this.#enqueue({ data, upstreamId, hidden: false, end: false });
  }

  /** A position-only entry: keeps the stream alive in the log, or records an upstream position. */
  mark(upstreamId = ''): void {
    this.#enqueue({ data: '', upstreamId, hidden: true, end: false });
  }

  /** The session is over: every client connection ends here. */
  end(): void {
    this.#enqueue({ data: '', upstreamId: '', hidden: true, end: true });
  }

  /** Resolves once everything pushed so far is in the log (or could not be written). */
  async flushed(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  #enqueue(e: NewEvent): void {
    this.#pending.push(e);
    this.#flushing ??= this.#flush();
  }

  async #flush(): Promise<void> {
    await Promise.resolve();
    while (this.#pending.length > 0) {
      const batch = this.#pending;
      this.#pending = [];
      const started = performance.now();
      try {
        await this.#hub.log.appendNext(this.key, batch, undefined, this.#trace);
        this.#hub.emit('append', { seconds: (performance.now() - started) / 1000, events: batch.length });
      } catch (err) {
        // Clients read this stream from the log only: without it the messages cannot reach them.
        if (!this.#failed) this.#hub.emit('degraded', { key: this.key, error: (err as Error).message });
        this.#failed = true;
      }
    }
    this.#flushing = undefined;
  }
}

export interface TailOptions {
  readonly key: string;
  /** Event ids are `<streamId>.<seq>`. */
  readonly streamId: string;
  /** The client's position: events after it are sent. */
  readonly afterSeq: number;
  /** Written first and not logged (the transport's `endpoint` event). */
  readonly prelude: string;
  /** True when the client came back with Last-Event-ID (counted as a resumption). */
  readonly resumed: boolean;
  /** Runs after every read of the log, at least once a second: the transport looks after the session. */
  readonly tick: (events: readonly LoggedEvent[]) => Promise<void>;
}

/**
 * Writes a session stream to one client: what the log holds after its position, then whatever
 * any replica appends, until the stream ends or the client leaves.
 */
export async function tailSession(hub: StreamHub, res: ServerResponse, opts: TailOptions): Promise<void> {
  res.writeHead(200, SSE_HEADERS);
  res.write(opts.prelude);
  const writer = hub.writer(res, opts.streamId, opts.afterSeq);
  const done = () => writer.done;
  // Nothing after an end: another replica may still append to a session that just ended.
  const write = (events: readonly LoggedEvent[]) => writer.replay(events.slice(0, events.findIndex((e) => e.end) + 1 || undefined));
  const follower = hub.log.follower(opts.key);
  try {
    let evicted = false;
    for (;;) {
      const events = await hub.log.read(opts.key, writer.lastSeq, REPLAY_PAGE);
      if (await write(events)) evicted = true;
      if (done()) break;
      await opts.tick(events);
      if (events.length < REPLAY_PAGE) break;
    }
    if (opts.resumed) hub.emit('resume', { outcome: evicted ? 'evicted' : 'hit' });
    while (!done()) {
      const events = await follower.next(writer.lastSeq, FOLLOW_BLOCK_MS);
      await write(events);
      // A client that left no longer looks after the session (it would take it over again).
      if (!done()) await opts.tick(events);
    }
  } catch (err) {
    // The log failed: end the response; the client comes back with Last-Event-ID.
    hub.emit('resumeFailed', { key: opts.key, error: (err as Error).message });
    writer.end();
  } finally {
    follower.close();
  }
}
