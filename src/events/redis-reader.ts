import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../redis.ts';
import type { Follower, LoggedEvent } from './log.ts';

export type XEntry = [id: string, fields: string[]];
type XReadReply = [key: string, entries: XEntry[]][] | null;

export interface StreamReaderOptions {
  /** Longest one blocking read waits; an entry on any followed stream, or a wake-up, ends it sooner. */
  readonly blockMs: number;
  /** How often streams are read when they cannot be waited on in one command (Cluster, or more than `maxKeys`). */
  readonly pollMs: number;
  /** Most streams in one XREAD. */
  readonly maxKeys: number;
  /** Most entries one read takes from one stream. */
  readonly count: number;
  /** A stream of the reader's own, written to wake a blocking read when another stream is to be read. */
  readonly wakeKey: string;
}

/** One follower's place in a stream. */
interface Subscription {
  readonly stream: string;
  /** Set by the first `next`: before that, the reader does not know where to read from. */
  started: boolean;
  /** The stream's entries after `from`, up to `position`, read but not yet taken by the follower. */
  buffer: LoggedEvent[];
  from: number;
  position: number;
  waiter: ((events: LoggedEvent[]) => void) | undefined;
  closed: boolean;
}

/**
 * Reads every stream this process follows with one connection, however many there are: an XREAD
 * BLOCK holds its connection until it returns, so one per follower would make Redis' connections
 * (maxclients, shared by all replicas) grow with the open streams. Each round reads every followed
 * stream from the lowest position a follower holds in it, in one `XREAD BLOCK … STREAMS k1 k2 …
 * id1 id2 …`, and hands each follower what follows its own position; a follower that has not
 * taken what it was handed is left out until it does, so a slow client holds at most one read's
 * worth here (it reads the rest from Redis later, at its pace).
 *
 * A stream followed while the read is blocked wakes it with an entry on `wakeKey`, which every
 * blocking read includes. When one command cannot hold every stream — a Cluster (the keys of one
 * command must share a hash slot) or more than `maxKeys` streams — the reader polls instead, a
 * command per slot and per `maxKeys` streams, every `pollMs` while nothing comes. A broken
 * connection is made again (ioredis) and the reader goes on from each follower's position.
 */
export class RedisStreamReader {
  readonly #redis: RedisClient;
  readonly #opts: StreamReaderOptions;
  readonly #streams = new Map<string, Set<Subscription>>();
  /** Standalone/Sentinel: the connection blocking reads hold (made at the first, kept until close). */
  #conn: Redis | undefined;
  #running = false;
  #closed = false;
  /** Where the round that is blocked or just ran read each stream from: a follower behind it must wake the reader. */
  #reading = new Map<string, number>();
  #blocked = false;
  /** Woken while a round was neither blocked nor waiting: the next one follows at once. */
  #again = false;
  #wakeSent = false;
  #wakeId = '0';
  /** Ends the reader's wait between rounds (a poll interval, or nothing to read). */
  #resume: (() => void) | undefined;

  constructor(redis: RedisClient, opts: StreamReaderOptions) {
    this.#redis = redis;
    this.#opts = opts;
  }

  follow(stream: string): Follower {
    const sub: Subscription = { stream, started: false, buffer: [], from: 0, position: 0, waiter: undefined, closed: false };
    let subs = this.#streams.get(stream);
    if (!subs) this.#streams.set(stream, (subs = new Set()));
    subs.add(sub);
    return {
      next: (afterSeq, blockMs) => this.#next(sub, afterSeq, blockMs),
      close: () => this.#unfollow(sub),
    };
  }

  close(): void {
    this.#closed = true;
    for (const subs of this.#streams.values()) for (const sub of subs) this.#unfollow(sub);
    this.#resume?.();
    this.#conn?.disconnect();
  }

  #next(sub: Subscription, afterSeq: number, blockMs: number): Promise<LoggedEvent[]> {
    // The log was closed under a follower still in use: it ends (a loop of empty reads would spin).
    if (this.#closed) return Promise.reject(new Error('the event log is closed'));
    if (sub.closed) return Promise.resolve([]);
    if (!sub.started || afterSeq < sub.from) {
      // First call, or the follower went back before what it was handed: read from its position.
      sub.started = true;
      sub.buffer = [];
      sub.from = sub.position = afterSeq;
    } else if (afterSeq > sub.from) {
      let skip = 0;
      while (skip < sub.buffer.length && sub.buffer[skip]!.seq <= afterSeq) skip++;
      sub.buffer = sub.buffer.slice(skip);
      sub.from = afterSeq;
      if (sub.position < afterSeq) sub.position = afterSeq;
    }
    if (sub.buffer.length > 0) return Promise.resolve(this.#take(sub));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        sub.waiter = undefined;
        resolve([]);
      }, blockMs);
      sub.waiter = (events) => {
        clearTimeout(timer);
        sub.waiter = undefined;
        resolve(events);
      };
      // The round under way does not read this stream from here: have another one now.
      const from = this.#reading.get(sub.stream);
      if (from === undefined || from > sub.position) this.#wake();
    });
  }

  #take(sub: Subscription): LoggedEvent[] {
    const events = sub.buffer;
    sub.buffer = [];
    sub.from = sub.position;
    return events;
  }

  #unfollow(sub: Subscription): void {
    if (sub.closed) return;
    sub.closed = true;
    sub.buffer = [];
    const subs = this.#streams.get(sub.stream);
    subs?.delete(sub);
    if (subs?.size === 0) this.#streams.delete(sub.stream);
    sub.waiter?.([]);
  }

  /** Makes the reader start a round now: ends its wait, or the blocking read under way. */
  #wake(): void {
    if (this.#closed) return;
    if (!this.#running) {
      this.#running = true;
      void this.#run();
      return;
    }
    if (this.#resume) return this.#resume();
    if (!this.#blocked) this.#again = true;
    else if (!this.#wakeSent) {
      this.#wakeSent = true;
      // Fire and forget: if it fails, Redis is in trouble and the read ends by itself (blockMs, or an error).
      const p = this.#redis.pipeline();
      p.xadd(this.#opts.wakeKey, 'MAXLEN', '1', '*', 'w', '1');
      p.pexpire(this.#opts.wakeKey, Math.max(60_000, 10 * this.#opts.blockMs));
      p.exec().catch(() => {});
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#closed) {
      const round = this.#plan();
      if (round.length === 0) {
        this.#reading.clear();
        await this.#pause(undefined);
        continue;
      }
      this.#reading = new Map(round);
      this.#again = false;
      try {
        const blocking = !(this.#redis instanceof Cluster) && round.length < this.#opts.maxKeys;
        const replies = blocking ? [await this.#block(round)] : await this.#poll(round);
        failures = 0;
        const got = this.#deliver(replies);
        if (!blocking && !got && !this.#again) await this.#pause(this.#opts.pollMs);
      } catch (err) {
        if (this.#closed) break;
        // The connection broke or Redis is away: ioredis connects again, and the next round reads
        // every stream from where its followers are, so nothing is lost or repeated. A read that
        // timed out may be stuck on a half-open connection: that one is dropped.
        if (this.#conn && (err as Error).message === 'Command timed out') this.#conn.disconnect(true);
        // Followers already in this round do not wake the reader meanwhile; a new one does.
        await this.#pause(Math.min(100 * 2 ** failures++, 1_000));
      }
    }
  }

  /** Each followed stream with the lowest position of the followers ready for more. */
  #plan(): [string, number][] {
    const round: [string, number][] = [];
    for (const [stream, subs] of this.#streams) {
      let from = Infinity;
      for (const sub of subs) if (sub.started && sub.buffer.length === 0 && sub.position < from) from = sub.position;
      if (from !== Infinity) round.push([stream, from]);
    }
    return round;
  }

  async #block(round: [string, number][]): Promise<XReadReply> {
    this.#conn ??= this.#connect();
    const keys = round.map(([stream]) => stream);
    const ids = round.map(([, from]) => entryId(from));
    this.#blocked = true;
    this.#wakeSent = false;
    try {
      const reply = (await this.#conn.call('XREAD', 'COUNT', this.#opts.count, 'BLOCK', this.#opts.blockMs, 'STREAMS', ...keys, this.#opts.wakeKey, ...ids, this.#wakeId)) as XReadReply;
      for (const [key, entries] of reply ?? []) if (key === this.#opts.wakeKey && entries.length > 0) this.#wakeId = entries.at(-1)![0];
      return reply;
    } finally {
      this.#blocked = false;
    }
  }

  #connect(): Redis {
    const redis = this.#redis as Redis;
    const conn = redis.duplicate({
      // A read cut by a broken connection fails at once (the next round starts over from the
      // followers' positions) instead of being sent again as it was, or hanging until its timeout.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // The next read waits for the connection being made again rather than failing at once.
      enableOfflineQueue: true,
      commandTimeout: this.#opts.blockMs + (redis.options.commandTimeout ?? 2_000),
    });
    conn.on('error', () => {});
    return conn;
  }

  /** Reads without waiting: one command per hash slot (Cluster) and per `maxKeys` streams. */
  async #poll(round: [string, number][]): Promise<XReadReply[]> {
    const groups = new Map<string, [string, number][]>();
    for (const entry of round) {
      const slot = this.#redis instanceof Cluster ? hashTag(entry[0]) : '';
      let group = groups.get(slot);
      if (!group) groups.set(slot, (group = []));
      group.push(entry);
    }
    const reads: Promise<XReadReply>[] = [];
    for (const group of groups.values()) {
      for (let i = 0; i < group.length; i += this.#opts.maxKeys) {
        const part = group.slice(i, i + this.#opts.maxKeys);
        const args = ['COUNT', this.#opts.count, 'STREAMS', ...part.map(([stream]) => stream), ...part.map(([, from]) => entryId(from))];
        reads.push(this.#redis.call('XREAD', ...args) as Promise<XReadReply>);
      }
    }
    return Promise.all(reads);
  }

  /** Hands what was read to the followers it is for; true if anything was read. */
  #deliver(replies: XReadReply[]): boolean {
    let got = false;
    for (const reply of replies) {
      for (const [stream, entries] of reply ?? []) {
        const subs = this.#streams.get(stream);
        const from = this.#reading.get(stream);
        if (!subs || from === undefined || entries.length === 0) continue;
        got = true;
        const events = entries.map(toEvent);
        for (const sub of subs) {
          // Left out of this round (not ready, or behind what was read): the next round reads for it.
          if (!sub.started || sub.buffer.length > 0 || sub.position < from) continue;
          const fresh = sub.position >= events.at(-1)!.seq ? [] : events.filter((e) => e.seq > sub.position);
          if (fresh.length === 0) continue;
          sub.buffer = fresh;
          sub.position = fresh.at(-1)!.seq;
          if (sub.waiter) sub.waiter(this.#take(sub));
        }
      }
    }
    return got;
  }

  /** Waits `ms` (forever if undefined) or until woken. */
  #pause(ms: number | undefined): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#resume = undefined;
        resolve();
      };
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      this.#resume = done;
    });
  }
}

/** The id of event `seq` (`1-<seq>`), from which XREAD reads what follows; everything for -1. */
function entryId(seq: number): string {
  return seq < 0 ? '0-0' : `1-${seq}`;
}

/** The part of a key Redis Cluster hashes: keys with the same one share a slot. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

export function toEvent([id, fields]: XEntry): LoggedEvent {
  let data = '';
  let upstreamId = '';
  let hidden = false;
  let end = false;
  for (let i = 0; i < fields.length; i += 2) {
    const v = fields[i + 1]!;
    switch (fields[i]) {
      case 'd':
        data = v;
        break;
      case 'u':
        upstreamId = v;
        break;
      case 'h':
        hidden = true;
        break;
      case 'e':
        end = true;
        break;
    }
  }
  return { seq: Number(id.slice(id.indexOf('-') + 1)), data, upstreamId, hidden, end };
}
