import { randomBytes } from 'node:crypto';
import { Cluster, type ChainableCommander } from 'ioredis';
import type { RedisClient } from '../redis.ts';
import type { EventLog, Follower, LoggedEvent, NewEvent, StreamInfo } from './log.ts';
import { RedisStreamReader, toEvent, type XEntry } from './redis-reader.ts';
import type { EventSpan, EventTracer, TracedRequest } from './tracing.ts';

// Production moves from a dead node to a live one only if nobody moved it first.
const CLAIM = `if redis.call('HGET', KEYS[1], 'producer') == ARGV[1] then redis.call('HSET', KEYS[1], 'producer', ARGV[2]) return 1 end return 0`;

// legacy: numbers the events after the stream's last entry in one atomic step, so several
// replicas can append to one stream. ARGV: maxLength, ttl, producer ('' = keep the meta as is),
// kind, requests, then per event: data, upstream id, hidden, end.
const APPEND_NEXT = `
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = 0
if last[1] then seq = tonumber(string.match(last[1][1], '%-(%d+)$')) end
for i = 6, #ARGV, 4 do
  seq = seq + 1
  local f = {'u', ARGV[i + 1]}
  if ARGV[i] ~= '' then f[#f + 1] = 'd'; f[#f + 1] = ARGV[i] end
  if ARGV[i + 2] == '1' then f[#f + 1] = 'h'; f[#f + 1] = '1' end
  if ARGV[i + 3] == '1' then f[#f + 1] = 'e'; f[#f + 1] = '1' end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '1-' .. seq, unpack(f))
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'producer', ARGV[3], 'kind', ARGV[4], 'requests', ARGV[5]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return seq`;

/** Following: one blocking read waits this long at most (a new follower wakes it sooner). */
const FOLLOW_BLOCK_MS = 2_000;
/** Following more streams than one XREAD may name, or on a Cluster: how often they are read. */
const FOLLOW_POLL_MS = 100;
const FOLLOW_MAX_KEYS = 500;
const FOLLOW_COUNT = 100;
/** OpenTelemetry's name for a batch's command count (stable; spelled here, the log does not load OpenTelemetry). */
const ATTR_DB_OPERATION_BATCH_SIZE = 'db.operation.batch.size';

/** An append waiting for its turn's pipeline; `commands` is how many it queued there. */
interface QueuedAppend {
  readonly key: string;
  readonly events: readonly LoggedEvent[];
  readonly info: StreamInfo | undefined;
  readonly ttlMs: number;
  /** traces: the request the stream was opened for, when traced. */
  readonly trace: TracedRequest | undefined;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  /** Set when queued on a pipeline: how many commands it added, and whether they set the expiry. */
  commands?: number;
  refresh?: 'none' | 'usual' | 'other';
}

/**
 * The event log on Redis Streams. Each gateway stream is one Redis stream whose entry ids are
 * `1-<seq>` (Redis refuses `0-0`), so "after seq" is a plain XRANGE/XREAD position; its meta hash names the producing
 * node. Keys carry the session in a hash tag, so a session's keys share a Cluster slot.
 * Appends are one pipeline per turn of the event loop: every stream's batch appended in that turn
 * (on a Cluster, every batch of one session), each XADD… (+ HSET on its first) (+ PEXPIRE of both
 * keys when due), then one WAIT when replica acknowledgements are asked for, so an acknowledged
 * event survives a failover. Events that come alone on many streams at once (progress of many
 * calls) then cost one round trip between them, not one each; a turn's lone XADD (events that
 * come apart) goes as a plain command, without a pipeline's objects. The expiry is refreshed at most once per `refreshMs` per stream (and always on its
 * first batch, its end, or another TTL): a stream lives `ttl` after its last event, less at most
 * `refreshMs`, and an event that comes alone costs one command instead of three.
 */
export class RedisEventLog implements EventLog {
  readonly #redis: RedisClient;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #maxLength: number;
  readonly #replicaAcks: number;
  readonly #replicaAckTimeoutMs: number;
  /** Every follower of this process reads through it: one connection, however many streams are followed. */
  readonly #reader: RedisStreamReader;
  /** When each stream's expiry was last set to `#ttlMs` (streams not seen for a while are dropped). */
  readonly #refreshed = new Map<string, number>();
  readonly #refreshMs: number;
  #swept = 0;
  /** Appends made in this turn of the event loop, sent together at its end (`#sendQueued`). */
  #queued: QueuedAppend[] = [];
  /** traces: each pipeline a span of the requests it writes for (src/events/tracing.ts); undefined when off. */
  readonly #tracer: EventTracer | undefined;

  constructor(redis: RedisClient, opts: { prefix: string; ttlMs: number; maxLength: number; replicaAcks: number; replicaAckTimeoutMs: number; tracer?: EventTracer | undefined }) {
    this.#redis = redis;
    this.#tracer = opts.tracer;
    this.#prefix = opts.prefix;
    this.#ttlMs = opts.ttlMs;
    this.#maxLength = opts.maxLength;
    this.#replicaAcks = opts.replicaAcks;
    this.#replicaAckTimeoutMs = opts.replicaAckTimeoutMs;
    this.#refreshMs = Math.min(1_000, Math.floor(opts.ttlMs / 10));
    this.#reader = new RedisStreamReader(redis, {
      blockMs: FOLLOW_BLOCK_MS,
      pollMs: FOLLOW_POLL_MS,
      maxKeys: FOLLOW_MAX_KEYS,
      count: FOLLOW_COUNT,
      wakeKey: `${opts.prefix}wake:${randomBytes(9).toString('base64url')}`,
    });
  }

  append(key: string, events: readonly LoggedEvent[], info?: StreamInfo, ttlMs = this.#ttlMs, trace?: TracedRequest): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#queued.push({ key, events, info, ttlMs, trace, resolve, reject }) === 1) setImmediate(this.#sendQueued);
    });
  }

  /** Sends the appends of this turn: one pipeline (on a Cluster, one per session: its keys share a node). */
  readonly #sendQueued = (): void => {
    const queued = this.#queued;
    this.#queued = [];
    if (!(this.#redis instanceof Cluster)) return this.#send(queued);
    const bySession = new Map<string, QueuedAppend[]>();
    for (const a of queued) {
      const session = a.key.slice(0, a.key.indexOf(':'));
      const group = bySession.get(session);
      if (group) group.push(a);
      else bySession.set(session, [a]);
    }
    for (const group of bySession.values()) this.#send(group);
  };

  #send(appends: readonly QueuedAppend[]): void {
    // traces: one span per pipeline, of the requests whose streams it writes; its commands are
    // sent outside their context (so not spanned one by one again).
    const span = this.#tracer && this.#span(this.#tracer, appends);
    const sent = this.#tracer ? this.#tracer.outside(() => this.#write(appends, span)) : this.#write(appends, undefined);
    // Whatever goes wrong fails the appends (a settled one stays as it was): none is left waiting.
    sent.catch((err: Error) => {
      span?.end('redis_error');
      for (const a of appends) a.reject(err);
    });
  }

  /** The span of a pipeline writing `appends`, when any of them is for a traced request. */
  #span(tracer: EventTracer, appends: readonly QueuedAppend[]): EventSpan | undefined {
    let requests: TracedRequest[] | undefined;
    let events = 0;
    for (const a of appends) {
      events += a.events.length;
      if (a.trace && !requests?.includes(a.trace)) (requests ??= []).push(a.trace);
    }
    return requests && tracer.logWrite(requests, events, appends.length);
  }

  /**
   * Writes `appends`: one pipeline, or, for a turn that holds one lone event and no expiry to
   * set (events that come apart, each in a turn of its own), its XADD as a plain command.
   */
  #write(appends: readonly QueuedAppend[], span: EventSpan | undefined): Promise<void> {
    const now = Date.now();
    const lone = appends.length === 1 ? appends[0]! : undefined;
    if (lone && !lone.info && lone.events.length === 1 && this.#refresh(lone, now) === 'none') return this.#xadd(lone, lone.events[0]!, span);
    return this.#pipeline(appends, now, span);
  }

  /** A lone event's XADD without a pipeline (a pipeline's objects cost more than its one command). */
  async #xadd(a: QueuedAppend, e: LoggedEvent, span: EventSpan | undefined): Promise<void> {
    span?.set(ATTR_DB_OPERATION_BATCH_SIZE, 1);
    // A refused command or Redis away rejects, which fails the append (#send).
    await this.#redis.xadd(this.#stream(a.key), 'MAXLEN', '~', this.#maxLength, `1-${e.seq}`, ...entryFields(e));
    const err = await this.#replicated();
    if (err) {
      span?.end('redis_replica_acks');
      return a.reject(err);
    }
    span?.end();
    a.resolve();
  }

  /**
   * One pipeline for `appends` (streams append one batch at a time, so each stream's order is
   * the order of its batches). Each append succeeds or fails by its own commands' replies; a
   * pipeline that fails as a whole (Redis away) fails every append in it.
   */
  async #pipeline(appends: readonly QueuedAppend[], now: number, span: EventSpan | undefined): Promise<void> {
    const p = this.#redis.pipeline();
    let commands = 0;
    for (const a of appends) commands += this.#commands(p, a, now);
    span?.set(ATTR_DB_OPERATION_BATCH_SIZE, commands);
    const results = await p.exec();
    const done: QueuedAppend[] = [];
    let at = 0;
    let refreshed = false;
    for (const a of appends) {
      let failed: Error | null | undefined;
      for (const end = at + a.commands!; at < end; at++) failed ||= results?.[at]?.[0];
      if (failed) {
        a.reject(failed);
        continue;
      }
      // A usual refresh is remembered; another TTL (an end) is not one to skip the next by.
      if (a.refresh === 'usual') this.#refreshed.set(a.key, now);
      else if (a.refresh === 'other') this.#refreshed.delete(a.key);
      refreshed ||= a.refresh !== 'none';
      done.push(a);
    }
    if (refreshed) this.#sweep(now);
    if (done.length > 0) {
      const err = await this.#replicated();
      if (err) {
        span?.end('redis_replica_acks');
        return void done.forEach((a) => a.reject(err));
      }
    }
    span?.end(done.length < appends.length ? 'redis_error' : undefined);
    for (const a of done) a.resolve();
  }

  /** With `replicaAcks`: waits until the writes made so far are on that many replicas; the error when they are not. */
  async #replicated(): Promise<Error | undefined> {
    if (this.#replicaAcks === 0) return undefined;
    // WAIT blocks this connection only; the acknowledged writes are then on the replicas too.
    const acked = await this.#redis.wait(this.#replicaAcks, this.#replicaAckTimeoutMs).catch((err: Error) => err);
    return acked instanceof Error ? acked : acked < this.#replicaAcks ? new Error(`only ${acked} of ${this.#replicaAcks} Redis replicas acknowledged the events`) : undefined;
  }

  /** Queues one append's commands on `p`, noting on `a` how many (returned too) and whether they refresh the expiry. */
  #commands(p: ChainableCommander, a: QueuedAppend, now: number): number {
    const stream = this.#stream(a.key);
    const meta = this.#meta(a.key);
    let n = 0;
    if (a.info) {
      const fields = ['producer', a.info.producer, 'kind', a.info.kind, 'requests', a.info.requests];
      if (a.info.guard) fields.push('guard', a.info.guard);
      p.hset(meta, ...fields);
      n++;
    }
    for (const e of a.events) {
      p.xadd(stream, 'MAXLEN', '~', this.#maxLength, `1-${e.seq}`, ...entryFields(e));
      n++;
    }
    a.refresh = this.#refresh(a, now);
    if (a.refresh !== 'none') {
      p.pexpire(stream, a.ttlMs);
      p.pexpire(meta, a.ttlMs);
      n += 2;
    }
    a.commands = n;
    return n;
  }

  /**
   * Whether `a` sets its keys' expiry: 'usual' (the log's TTL: on a stream's first batch, or a
   * `refreshMs` after the last), 'other' (an end, or another TTL: always), or 'none'.
   */
  #refresh(a: QueuedAppend, now: number): 'none' | 'usual' | 'other' {
    if (a.ttlMs !== this.#ttlMs || a.events.some((e) => e.end)) return 'other';
    return a.info !== undefined || now - (this.#refreshed.get(a.key) ?? -Infinity) >= this.#refreshMs ? 'usual' : 'none';
  }

  appendNext(key: string, events: readonly NewEvent[], info?: StreamInfo, trace?: TracedRequest): Promise<number> {
    const tracer = this.#tracer;
    if (!tracer) return this.#appendNext(key, events, info, undefined);
    // traces: one span per round trip, as an append's pipeline (one stream, its batch of events);
    // its commands are sent outside the request's context (so not spanned one by one again).
    const span = trace && tracer.logWrite([trace], events.length, 1);
    return tracer.outside(() => this.#appendNext(key, events, info, span));
  }

  async #appendNext(key: string, events: readonly NewEvent[], info: StreamInfo | undefined, span: EventSpan | undefined): Promise<number> {
    const args: (string | number)[] = [this.#maxLength, this.#ttlMs, info?.producer ?? '', info?.kind ?? '', info?.requests ?? ''];
    for (const e of events) args.push(e.data, e.upstreamId, e.hidden ? '1' : '', e.end ? '1' : '');
    span?.set(ATTR_DB_OPERATION_BATCH_SIZE, 1);
    let seq: number;
    let acked = this.#replicaAcks;
    try {
      seq = Number(await this.#redis.eval(APPEND_NEXT, 2, this.#stream(key), this.#meta(key), ...args));
      if (this.#replicaAcks > 0) acked = await this.#redis.wait(this.#replicaAcks, this.#replicaAckTimeoutMs);
    } catch (err) {
      span?.end('redis_error');
      throw err;
    }
    if (acked < this.#replicaAcks) {
      span?.end('redis_replica_acks');
      throw new Error(`fewer than ${this.#replicaAcks} Redis replicas acknowledged the events`);
    }
    span?.end();
    return seq;
  }

  async read(key: string, afterSeq: number, limit: number): Promise<LoggedEvent[]> {
    const entries = (await this.#redis.xrange(this.#stream(key), `1-${afterSeq + 1}`, '+', 'COUNT', limit)) as XEntry[];
    return entries.map(toEvent);
  }

  async open(key: string, afterSeq: number, limit: number): Promise<{ info: StreamInfo | undefined; events: LoggedEvent[] }> {
    const results = await this.#redis.pipeline().hgetall(this.#meta(key)).xrange(this.#stream(key), `1-${afterSeq + 1}`, '+', 'COUNT', limit).exec();
    const [[metaErr, meta], [rangeErr, entries]] = results as [[Error | null, Record<string, string>], [Error | null, XEntry[]]];
    if (metaErr) throw metaErr;
    if (rangeErr) throw rangeErr;
    return { info: toInfo(meta), events: entries.map(toEvent) };
  }

  async last(key: string): Promise<LoggedEvent | undefined> {
    const entries = (await this.#redis.xrevrange(this.#stream(key), '+', '-', 'COUNT', 1)) as XEntry[];
    return entries[0] ? toEvent(entries[0]) : undefined;
  }

  async info(key: string): Promise<StreamInfo | undefined> {
    return toInfo(await this.#redis.hgetall(this.#meta(key)));
  }

  async claim(key: string, from: string, to: string): Promise<boolean> {
    return (await this.#redis.eval(CLAIM, 1, this.#meta(key), from, to)) === 1;
  }

  follower(key: string): Follower {
    const follower = this.#reader.follow(this.#stream(key));
    const tracer = this.#tracer;
    if (!tracer) return follower;
    // traces: the reader's loop is the replica's, shared by every follower; the follower that
    // starts it must not make it (and its reads, for as long as it runs) a request's.
    return { next: (afterSeq, blockMs) => tracer.outside(() => follower.next(afterSeq, blockMs)), close: () => follower.close() };
  }

  async heartbeat(node: string, ttlMs: number): Promise<void> {
    await this.#redis.set(`${this.#prefix}node:${node}`, '1', 'PX', ttlMs);
  }

  async alive(node: string): Promise<boolean> {
    return (await this.#redis.exists(`${this.#prefix}node:${node}`)) === 1;
  }

  healthy(): boolean {
    return this.#redis.status === 'ready';
  }

  async close(): Promise<void> {
    this.#reader.close();
  }

  /** Forgets refresh times too old to spare a PEXPIRE (a stream that went quiet, or ended elsewhere). */
  #sweep(now: number): void {
    if (now - this.#swept < 10 * this.#refreshMs) return;
    this.#swept = now;
    for (const [key, at] of this.#refreshed) if (now - at >= this.#refreshMs) this.#refreshed.delete(key);
  }

  #stream(key: string): string {
    const sep = key.indexOf(':');
    return `${this.#prefix}ev:{${key.slice(0, sep)}}:${key.slice(sep + 1)}`;
  }

  #meta(key: string): string {
    const sep = key.indexOf(':');
    return `${this.#prefix}evm:{${key.slice(0, sep)}}:${key.slice(sep + 1)}`;
  }
}

/** An event's fields in its stream entry (src/events/redis-reader.ts reads them back). */
function entryFields(e: LoggedEvent): string[] {
  const fields = ['u', e.upstreamId];
  if (e.data) fields.push('d', e.data);
  if (e.hidden) fields.push('h', '1');
  if (e.end) fields.push('e', '1');
  return fields;
}

function toInfo(h: Record<string, string>): StreamInfo | undefined {
  if (!h.producer) return undefined;
  const info: StreamInfo = { producer: h.producer, kind: h.kind === 'get' ? 'get' : 'post', requests: h.requests ?? '' };
  return h.guard ? { ...info, guard: h.guard } : info;
}
