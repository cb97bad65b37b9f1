import type { TracedRequest } from './tracing.ts';

/**
 * The event log: every SSE event the gateway sends a client, recorded before it is sent, so a
 * client can resume any stream on any replica. One log stream per gateway stream, keyed by
 * session and stream id; entries are numbered by `seq`, the last part of the client's event id.
 */
export interface LoggedEvent {
  readonly seq: number;
  /** The JSON-RPC message as sent (one line of JSON); '' for hidden entries. */
  readonly data: string;
  /** The upstream's event id at this point of its stream ('' if it gives none): where an upstream resume starts. */
  readonly upstreamId: string;
  /** Not sent to clients: a position-only entry (e.g. the upstream's priming event). */
  readonly hidden: boolean;
  /** The stream ended here (the request was answered, or the upstream closed a GET stream). */
  readonly end: boolean;
}

/** An event to append whose seq the log assigns. */
export type NewEvent = Omit<LoggedEvent, 'seq'>;

export interface StreamInfo {
  /** Gateway node that appends to the stream now. */
  readonly producer: string;
  /** `post`: the answer stream of a POST; `get`: the standalone stream. */
  readonly kind: 'post' | 'get';
  /** JSON of the request id(s) a POST stream answers, for an error if the stream cannot go on. */
  readonly requests: string;
  /**
   * auth: how the answer is filtered for its caller (src/auth/guard.ts `serializeGuard`), when it is:
   * whoever picks the stream up from the upstream again filters what comes next the same way.
   */
  readonly guard?: string;
}

export interface Follower {
  /**
   * Events after `afterSeq`, in order, waiting up to `blockMs` for the first (also while the
   * stream does not exist yet); [] on timeout or once closed. A batch may come in parts.
   */
  next(afterSeq: number, blockMs: number): Promise<LoggedEvent[]>;
  /** Stops following; ends a `next` that waits. */
  close(): void;
}

export interface EventLog {
  /**
   * Appends in order (one round-trip per call); `info` is written with the first batch; `ttlMs`
   * overrides the retention from now on (a finished stream needs less); `trace`: the request the
   * stream was opened for, whose span the write is a child of when the store is one to trace (Redis). Throws if the store is down.
   */
  append(key: string, events: readonly LoggedEvent[], info?: StreamInfo, ttlMs?: number, trace?: TracedRequest): Promise<void>;
  /**
   * legacy: appends after whatever the stream holds, numbering the events itself, atomically, so
   * several replicas may append to one stream (the 2024-11-05 transport's session stream).
   * `info` is (re)written with the events; `trace`: the request the events are for, as `append`'s.
   * Returns the seq of the last event. Throws if the store is down.
   */
  appendNext(key: string, events: readonly NewEvent[], info?: StreamInfo, trace?: TracedRequest): Promise<number>;
  /** Up to `limit` events with seq > afterSeq, oldest first. */
  read(key: string, afterSeq: number, limit: number): Promise<LoggedEvent[]>;
  /** `info` and `read` together, in one round trip: a resumption's first step. */
  open(key: string, afterSeq: number, limit: number): Promise<{ info: StreamInfo | undefined; events: LoggedEvent[] }>;
  /** The last event, for a takeover (its seq and upstream position). */
  last(key: string): Promise<LoggedEvent | undefined>;
  info(key: string): Promise<StreamInfo | undefined>;
  /** Moves production from a dead node to `to`, atomically; false when someone else did. */
  claim(key: string, from: string, to: string): Promise<boolean>;
  /** Follows a stream as it is appended to (anywhere); costs no connection of its own. */
  follower(key: string): Follower;
  /** Marks `node` alive for `ttlMs`. */
  heartbeat(node: string, ttlMs: number): Promise<void>;
  alive(node: string): Promise<boolean>;
  healthy(): boolean;
  close(): Promise<void>;
}

export function streamKey(session: string, stream: string): string {
  return `${session}:${stream}`;
}
