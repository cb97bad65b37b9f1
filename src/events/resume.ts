import type { ServerResponse } from 'node:http';
import { GatewayError } from '../errors.ts';
import { streamKey, type LoggedEvent, type StreamInfo } from './log.ts';
import { Producer, REPLAY_PAGE } from './producer.ts';
import type { ProducerHost, Reopen, ResumeOutcome } from './types.ts';
import type { EventSpan } from './tracing.ts';
import type { ClientWriter } from './writer.ts';

const FOLLOW_BLOCK_MS = 1_000;

/** A resumption checked and ready: the stream, the client's position, and (when read already) the first page to replay. */
export interface PreparedResume {
  readonly key: string;
  readonly streamId: string;
  readonly seq: number;
  readonly info: StreamInfo;
  readonly page?: LoggedEvent[];
  /** The published server the stream belongs to (a reload that replaces its pool hands its standalone streams over). */
  readonly server: string;
}

/** What resumption needs of the hub (the StreamHub, src/events/hub.ts). */
export interface ResumeHost extends ProducerHost {
  /** The hub is closing: followers stop. */
  readonly closed: boolean;
  /** The producer of stream `key` on this node, if any. */
  producer(key: string): Producer | undefined;
  /** A stream taken over here: its producer is now one of this node's. */
  own(producer: Producer): void;
  writer(res: ServerResponse, streamId: string, lastSeq: number): ClientWriter;
}

/**
 * A client that comes back with `Last-Event-ID`: what followed its position is replayed, then it
 * continues live — attached to the producer when the stream is produced here, else following the
 * log; and when the producing replica died, this one takes the stream over and resumes the
 * upstream at its last event id.
 */
export class Resumption {
  readonly #hub: ResumeHost;

  constructor(hub: ResumeHost) {
    this.#hub = hub;
  }

  /**
   * Checks a `Last-Event-ID` for this session before anything is written: the stream must be
   * known here or in the log. Throws MCPGW_ERR_EVENTS_GONE otherwise.
   */
  async prepare(session: string, lastEventId: string, server: string): Promise<PreparedResume> {
    const hub = this.#hub;
    const dot = lastEventId.lastIndexOf('.');
    const streamId = lastEventId.slice(0, dot);
    const seq = Number(lastEventId.slice(dot + 1));
    if (dot <= 0 || !Number.isSafeInteger(seq) || seq < 0 || !/^[A-Za-z0-9_-]+$/.test(streamId)) {
      hub.emit('resume', { outcome: 'miss' });
      throw new GatewayError('MCPGW_ERR_EVENTS_GONE', 'Last-Event-ID is not an event id this gateway issued');
    }
    const key = streamKey(session, streamId);
    const local = hub.producer(key)?.info;
    // Produced elsewhere: its info and the first page to replay come in one round trip.
    const opened = local ? undefined : await hub.log.open(key, seq, REPLAY_PAGE).catch(() => undefined);
    const info = local ?? opened?.info;
    if (!info) {
      hub.emit('resume', { outcome: 'miss' });
      throw new GatewayError('MCPGW_ERR_EVENTS_GONE', hub.log.healthy() ? 'the stream is unknown or expired' : 'the event log is unavailable');
    }
    return { key, streamId, seq, info, page: opened?.events, server };
  }

  /** Replays what followed `seq`, then continues live: here, by following the log, or by taking the stream over. */
  resume(prepared: PreparedResume, res: ServerResponse, reopen: Reopen): void {
    const hub = this.#hub;
    const writer = hub.writer(res, prepared.streamId, prepared.seq);
    writer.open();
    // traces: the replay from the log, until the client caught up (undefined when off).
    const span = hub.tracer?.replay();
    const local = hub.producer(prepared.key);
    if (local) {
      void local.attach(writer).then((evicted) => {
        if (span) endReplay(span, prepared.seq, writer, evicted ? 'evicted' : 'hit');
        hub.emit('resume', { outcome: evicted ? 'evicted' : 'hit' });
      });
      return;
    }
    void this.#follow(prepared, writer, reopen, span);
  }

  async #follow(prepared: PreparedResume, writer: ClientWriter, reopen: Reopen, span: EventSpan | undefined): Promise<void> {
    const hub = this.#hub;
    const { key, page } = prepared;
    let follower;
    let outcome: ResumeOutcome = 'hit';
    const from = writer.lastSeq;
    try {
      // Replay what the log holds after the client's position (its first page may be read already).
      for (let first = page; ; first = undefined) {
        const events = first ?? (await hub.log.read(key, writer.lastSeq, REPLAY_PAGE));
        if (await writer.replay(events)) outcome = 'evicted';
        if (writer.done) {
          if (span) endReplay(span, from, writer, outcome);
          return void hub.emit('resume', { outcome });
        }
        if (events.length < REPLAY_PAGE) break;
      }
      if (span) endReplay(span, from, writer, outcome);
      // Then follow the producer, wherever it is, until the stream ends.
      follower = hub.log.follower(key);
      while (!writer.done && !hub.closed) {
        const events = await follower.next(writer.lastSeq, FOLLOW_BLOCK_MS);
        await writer.replay(events);
        if (events.length > 0) continue;
        const current = await hub.log.info(key);
        if (!current) break;
        const local = hub.producer(key);
        if (local) {
          const evicted = await local.attach(writer);
          hub.emit('resume', { outcome: evicted ? 'evicted' : outcome });
          return;
        }
        if (current.producer === hub.opts.node || !(await hub.log.alive(current.producer))) {
          if (await hub.log.claim(key, current.producer, hub.opts.node)) {
            outcome = 'upstream';
            await this.#takeover(prepared, current, writer, reopen);
            return;
          }
        }
      }
      hub.emit('resume', { outcome });
      writer.end();
    } catch (err) {
      // The log failed mid-resume: end the response; the client resumes again.
      span?.end('MCPGW_ERR_EVENTS_GONE');
      hub.emit('resume', { outcome: 'miss' });
      hub.emit('resumeFailed', { key, error: (err as Error).message });
      writer.end();
    } finally {
      follower?.close();
    }
  }

  async #takeover(prepared: PreparedResume, info: StreamInfo, writer: ClientWriter, reopen: Reopen): Promise<void> {
    const hub = this.#hub;
    const { key, streamId } = prepared;
    const last = await hub.log.last(key);
    if (last?.end) {
      // It ended after all (the end landed between our reads): nothing to take over.
      await writer.replay([last]);
      writer.end();
      return;
    }
    const seq = last?.seq ?? 0;
    const producer = new Producer(hub, key, streamId, prepared.server, { ...info, producer: hub.opts.node }, seq, last?.upstreamId ?? '', reopen, false);
    hub.own(producer);
    hub.emit('resume', { outcome: 'upstream' });
    await producer.attach(writer);
    await producer.continueUpstream();
  }
}

/** traces: a replay is over: how far it took the client (log entries, hidden ones included) and how it went. */
function endReplay(span: EventSpan, from: number, writer: ClientWriter, outcome: ResumeOutcome): void {
  span.set('mcpgw.replay.entries', Math.max(0, writer.lastSeq - from));
  span.set('mcpgw.resume.outcome', outcome);
  span.end();
}
