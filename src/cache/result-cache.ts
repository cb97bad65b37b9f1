import { createHash, randomBytes } from 'node:crypto';
import { MAX_CACHE_TTL_MS } from '../config/types.ts';
import type { CacheStore } from './store.ts';

/**
 * Results of reads and lists, shared by every replica through the store.
 *
 * Invalidation is by version: each entry is stamped with the versions of what can invalidate it —
 * the whole server (`all`, bumped by tools/call), its list (`tools`, `prompts`, `resources`,
 * bumped by list_changed) or, for resources/read, its URI (bumped by resources/updated). A bump
 * writes a fresh random version; an entry whose stamp no longer matches is a miss. One MGET reads
 * the versions and the entry together, every replica sees a bump at once, and a fetch that
 * raced an invalidation stores its result under the old stamp, where no one looks.
 *
 * A version key lives longer than any entry (the 24 h TTL cap plus an hour), so when one expires
 * and reads as "0" again, nothing stamped with an earlier "0" is left.
 *
 * Privacy: a result is stored under the request (server, method, canonical params, protocol
 * revision). A `cacheScope: "private"` result — or any result of a server configured `perUser` —
 * is stored under the request plus the caller's context (principal, or session when auth is off),
 * and the shared entry holds only a marker saying "private: ask with your context".
 */

export type ListNamespace = 'tools' | 'prompts' | 'resources';
export type Invalidation = 'all' | ListNamespace | { readonly uri: string };

const LIST_NAMESPACE: Readonly<Record<string, ListNamespace>> = {
  'tools/list': 'tools',
  'prompts/list': 'prompts',
  'resources/list': 'resources',
  'resources/templates/list': 'resources',
};

const VERSION_TTL_MS = MAX_CACHE_TTL_MS + 3_600_000;
const RESULT = 'R';
const PRIVATE = 'P';

export interface CacheQuery {
  readonly server: string;
  /** resources/read, or one of the list methods. */
  readonly method: string;
  readonly params: Readonly<Record<string, unknown>> | undefined;
  readonly protocolVersion: string;
  /** Who asks: a private result is served back to this context only. */
  readonly context: string;
  /** Every result is private (servers.<name>.cache.perUser). */
  readonly perUser: boolean;
}

export interface Lookup {
  /** The cached result (JSON text of the `result` member), when there is one. */
  readonly hit: string | undefined;
  /** The versions a result fetched now is stored under. */
  readonly stamp: string;
  readonly sharedKey: string;
  readonly privateKey: string;
  readonly context: string;
  readonly perUser: boolean;
}

/** What one fetch shares with the callers that waited for it. */
export interface Shared {
  readonly result: string;
  readonly scope: 'public' | 'private';
  readonly context: string;
}

export class ResultCache {
  readonly #store: CacheStore;
  readonly #prefix: string;
  /** Fetches under way on this replica, by entry and stamp: concurrent misses make one upstream call. */
  readonly #flights = new Map<string, Promise<Shared | undefined>>();

  constructor(store: CacheStore, prefix: string) {
    this.#store = store;
    this.#prefix = prefix;
  }

  /** Whether a request can be answered from the cache at all. */
  static cacheable(method: string | undefined, params: Readonly<Record<string, unknown>> | undefined): boolean {
    if (method === 'resources/read') return typeof params?.uri === 'string' && !dependsOnInput(params);
    return method !== undefined && method in LIST_NAMESPACE && !dependsOnInput(params);
  }

  async lookup(q: CacheQuery): Promise<Lookup> {
    const base = this.#base(q.server);
    const entry = `${base}e:${digest(`${q.method}\n${q.protocolVersion}\n${canonical(q.params, true)}`)}`;
    const privateKey = `${entry}:${digest(q.context)}`;
    const ns = q.method === 'resources/read' ? `uri:${digest(String(q.params!.uri))}` : LIST_NAMESPACE[q.method]!;
    const keys = [`${base}v:all`, `${base}v:${ns}`, q.perUser ? privateKey : entry];
    if (!q.perUser) keys.push(privateKey);
    const [all, version, first, second] = await this.#store.get(keys);
    const stamp = `${all ?? '0'}.${version ?? '0'}`;
    let hit = resultOf(first, stamp);
    if (!q.perUser && hit === PRIVATE) hit = resultOf(second, stamp);
    return { hit: hit === PRIVATE ? undefined : hit, stamp, sharedKey: entry, privateKey, context: q.context, perUser: q.perUser };
  }

  /** Stores a result fetched after `lookup`, under the stamp that lookup saw. */
  async store(l: Lookup, result: string, scope: 'public' | 'private', ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return;
    const value = `${l.stamp}\n${RESULT}${result}`;
    if (l.perUser) return this.#store.set([[l.privateKey, value]], ttlMs);
    if (scope === 'public') return this.#store.set([[l.sharedKey, value]], ttlMs);
    await this.#store.set([[l.privateKey, value], [l.sharedKey, `${l.stamp}\n${PRIVATE}`]], ttlMs);
  }

  /** Makes every entry `what` covers a miss, on every replica sharing the store. */
  async invalidate(server: string, what: Invalidation): Promise<void> {
    const ns = typeof what === 'string' ? what : `uri:${digest(what.uri)}`;
    await this.#store.set([[`${this.#base(server)}v:${ns}`, randomBytes(6).toString('base64url')]], VERSION_TTL_MS);
  }

  /** The fetch of this entry already under way on this replica, if any. */
  joined(l: Lookup): Promise<Shared | undefined> | undefined {
    return this.#flights.get(flightKey(l));
  }

  /**
   * Registers the caller as the one fetching this entry; call the result with what it got (or
   * undefined). After `maxMs` the entry is given up anyway, so an answer that never ends (or
   * never reports) cannot hold it.
   */
  lead(l: Lookup, maxMs: number): (shared: Shared | undefined) => void {
    const key = flightKey(l);
    let resolve!: (shared: Shared | undefined) => void;
    const flight = new Promise<Shared | undefined>((r) => (resolve = r));
    this.#flights.set(key, flight);
    const settle = (shared: Shared | undefined) => {
      clearTimeout(timer);
      if (this.#flights.get(key) === flight) this.#flights.delete(key);
      resolve(shared);
    };
    const timer = setTimeout(() => settle(undefined), maxMs);
    timer.unref();
    return settle;
  }

  #base(server: string): string {
    // The hash tag keeps one server's keys in one Cluster slot: MGET needs that.
    return `${this.#prefix}cache:{${server}}:`;
  }
}

/** A shared result usable by this lookup's caller. */
export function usable(shared: Shared | undefined, l: Lookup): string | undefined {
  if (!shared) return undefined;
  return shared.scope === 'public' || shared.context === l.context ? shared.result : undefined;
}

function flightKey(l: Lookup): string {
  return `${l.perUser ? l.privateKey : l.sharedKey}|${l.stamp}`;
}

/** The payload of a stored value if it carries `stamp` ('P' for a private marker). */
function resultOf(value: string | undefined, stamp: string): string | undefined {
  if (value === undefined || value.length <= stamp.length + 1 || !value.startsWith(stamp) || value.charCodeAt(stamp.length) !== 10) return undefined;
  const kind = value[stamp.length + 1];
  if (kind === PRIVATE) return PRIVATE;
  return kind === RESULT ? value.slice(stamp.length + 2) : undefined;
}

/** Results of multi round-trip retries depend on inputs outside the key: never cached (2026-07-28). */
function dependsOnInput(params: Readonly<Record<string, unknown>> | undefined): boolean {
  return params !== undefined && ('inputResponses' in params || 'requestState' in params);
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 32);
}

/** JSON with object keys sorted; `_meta` (progress tokens and the like) is not part of the request. */
export function canonical(value: unknown, top = false): string {
  if (value === undefined) return top ? '{}' : 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonical(v)).join(',')}]`;
  const keys = Object.keys(value)
    .filter((k) => !(top && k === '_meta') && (value as Record<string, unknown>)[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
}
