/**
 * traces: what the event log and the stream hub tell tracing (src/ops/tracing.ts implements it;
 * undefined when tracing is off, so the log's and the hub's only cost then is one branch where
 * they would trace). A stream outlives the step that opened it: its producer keeps the request it
 * was opened for (`current`), and the log's writes for it become children of that request's span.
 */
export interface EventTracer {
  /** The request served in this async context (opaque to the events), undefined outside a traced one. */
  current(): TracedRequest | undefined;
  /**
   * The span of one pipelined write to the event log: a CLIENT child of the first request it
   * writes for, linked to the others (the appends of one event-loop turn share a round trip):
   * `events` appended to `streams` streams; the command count is set once known.
   */
  logWrite(requests: readonly TracedRequest[], events: number, streams: number): EventSpan;
  /**
   * A resumption's replay from the log (`Last-Event-ID`): an INTERNAL child of the request in
   * context, undefined outside one.
   */
  replay(): EventSpan | undefined;
  /** Runs `fn` outside any request: the Redis commands it sends are not spanned one by one (a logWrite span covers them). */
  outside<R>(fn: () => R): R;
}

/** A request as the events hold it: only tracing looks inside. */
export interface TracedRequest {
  readonly traced: true;
}

export interface EventSpan {
  /** Sets an attribute known only as the work goes on (how many events a replay wrote). */
  set(key: string, value: number | string | boolean): void;
  /** Ends it; `error` is an error_type when the work failed. */
  end(error?: string): void;
}
