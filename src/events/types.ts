/**
 * The hub's vocabulary, shared by the hub (hub.ts), the producer of each stream (producer.ts) and
 * the resumption of one (resume.ts): options, the events the hub emits, and what a producer needs
 * of the hub that runs it.
 */
import type { Readable } from 'node:stream';
import type { EventEmitter } from 'node:events';
import type { EventLog, StreamInfo } from './log.ts';
import type { EventTracer } from './tracing.ts';

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
 * Opens the upstream side of a stream again after it broke, ended before its answer (the
 * upstream has its clients poll, src/upstream/polling.ts) or its producer died: for HTTP, a GET
 * with the upstream's Last-Event-ID (its resumption); undefined when that cannot be done.
 */
export type Reopen = (upstreamEventId: string, info: StreamInfo) => Promise<Readable | undefined>;

/** What a stream's producer needs of the hub that runs it (the StreamHub, src/events/hub.ts). */
export interface ProducerHost extends Pick<EventEmitter<HubEventMap>, 'emit'> {
  readonly log: EventLog;
  readonly opts: HubOptions;
  /** traces: undefined when off (src/events/tracing.ts). */
  readonly tracer: EventTracer | undefined;
  /** The producer of stream `key` is done: the hub forgets it (if it is still the one it knows). */
  release(key: string, producer: object): void;
}
