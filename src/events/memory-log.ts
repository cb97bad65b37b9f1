import type { EventLog, Follower, LoggedEvent, NewEvent, StreamInfo } from './log.ts';

interface Entry {
  info: StreamInfo | undefined;
  events: LoggedEvent[];
  expiresAt: number;
}

const FOLLOW_PAGE = 1_000;

/** The event log in this process's memory: resumption on this replica only. */
export class MemoryEventLog implements EventLog {
  readonly #streams = new Map<string, Entry>();
  readonly #ttlMs: number;
  readonly #maxLength: number;
  readonly #alive = new Map<string, number>();
  /** Followers waiting for a stream's next event, whether the stream exists yet or not (like XREAD BLOCK). */
  readonly #waiters = new Map<string, Set<() => void>>();
  readonly #sweeper: NodeJS.Timeout;

  constructor(opts: { ttlMs: number; maxLength: number }) {
    this.#ttlMs = opts.ttlMs;
    this.#maxLength = opts.maxLength;
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(60_000, Math.max(1_000, this.#ttlMs)));
    this.#sweeper.unref();
  }

  async append(key: string, events: readonly LoggedEvent[], info?: StreamInfo, ttlMs = this.#ttlMs): Promise<void> {
    let entry = this.#streams.get(key);
    if (!entry) {
      entry = { info, events: [], expiresAt: 0 };
      this.#streams.set(key, entry);
    } else if (info) {
      entry.info = info;
    }
    entry.events.push(...events);
    if (entry.events.length > this.#maxLength) entry.events.splice(0, entry.events.length - this.#maxLength);
    entry.expiresAt = Date.now() + ttlMs;
    const waiters = this.#waiters.get(key);
    if (waiters) for (const wake of [...waiters]) wake();
  }

  async appendNext(key: string, events: readonly NewEvent[], info?: StreamInfo): Promise<number> {
    let seq = this.#live(key)?.events.at(-1)?.seq ?? 0;
    await this.append(key, events.map((e) => ({ ...e, seq: ++seq })), info);
    return seq;
  }

  async read(key: string, afterSeq: number, limit: number): Promise<LoggedEvent[]> {
    return this.#read(key, afterSeq, limit);
  }

  #read(key: string, afterSeq: number, limit: number): LoggedEvent[] {
    const events = this.#live(key)?.events;
    if (!events) return [];
    let i = events.findIndex((e) => e.seq > afterSeq);
    if (i < 0) return [];
    const out: LoggedEvent[] = [];
    for (; i < events.length && out.length < limit; i++) out.push(events[i]!);
    return out;
  }

  async last(key: string): Promise<LoggedEvent | undefined> {
    return this.#live(key)?.events.at(-1);
  }

  async info(key: string): Promise<StreamInfo | undefined> {
    return this.#live(key)?.info;
  }

  async open(key: string, afterSeq: number, limit: number): Promise<{ info: StreamInfo | undefined; events: LoggedEvent[] }> {
    return { info: await this.info(key), events: await this.read(key, afterSeq, limit) };
  }

  async claim(key: string, from: string, to: string): Promise<boolean> {
    const entry = this.#live(key);
    if (!entry?.info || entry.info.producer !== from) return false;
    entry.info = { ...entry.info, producer: to };
    return true;
  }

  follower(key: string): Follower {
    let closed = false;
    let wake: (() => void) | undefined;
    return {
      next: async (afterSeq, blockMs) => {
        const deadline = Date.now() + blockMs;
        for (;;) {
          // Read and start waiting in one turn: an append in between would go unnoticed until the timeout.
          const now = this.#read(key, afterSeq, FOLLOW_PAGE);
          const left = deadline - Date.now();
          if (now.length > 0 || closed || left <= 0) return closed ? [] : now;
          await new Promise<void>((resolve) => {
            let waiters = this.#waiters.get(key);
            if (!waiters) this.#waiters.set(key, (waiters = new Set()));
            const done = () => {
              clearTimeout(timer);
              wake = undefined;
              waiters.delete(done);
              if (waiters.size === 0 && this.#waiters.get(key) === waiters) this.#waiters.delete(key);
              resolve();
            };
            const timer = setTimeout(done, left);
            wake = done;
            waiters.add(done);
          });
        }
      },
      close: () => {
        closed = true;
        wake?.();
      },
    };
  }

  async heartbeat(node: string, ttlMs: number): Promise<void> {
    this.#alive.set(node, Date.now() + ttlMs);
  }

  async alive(node: string): Promise<boolean> {
    return (this.#alive.get(node) ?? 0) > Date.now();
  }

  healthy(): boolean {
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
  }

  #live(key: string): Entry | undefined {
    const entry = this.#streams.get(key);
    if (entry && entry.expiresAt < Date.now()) {
      this.#streams.delete(key);
      return undefined;
    }
    return entry;
  }

  #sweep(): void {
    const now = Date.now();
    for (const [k, e] of this.#streams) if (e.expiresAt < now) this.#streams.delete(k);
  }
}
