import { randomBytes } from 'node:crypto';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { GatewayError } from '../errors.ts';
import { idKey, isBatchBody, type Envelope } from '../protocol/jsonrpc.ts';
import { SseSplitter, sseMessage } from '../protocol/sse.ts';
import { wireBody } from '../protocol/wire.ts';
import { discard } from './body.ts';
import type { ClientRequest, UpstreamResponse } from './types.ts';

/**
 * Rewriting what a caller may know of a server's tools, resources and prompts, on the wire: the
 * mechanics the auth guard (src/auth/guard.ts, per caller) and curation (src/curation/, the same
 * for every caller) share. A request naming an item is rewritten before it goes upstream (a
 * hidden name swapped for a stand-in that cannot exist, whose answer is the upstream's own
 * "unknown"); list results are parsed and re-serialized with the items the plan publishes; every
 * other byte of an answer passes through untouched.
 */

export type ItemKind = 'tools' | 'resources' | 'prompts';

export interface ListSpec {
  readonly kind: ItemKind;
  readonly field: string;
  readonly key: string;
}

export const LISTS: Readonly<Record<string, ListSpec>> = {
  'tools/list': { kind: 'tools', field: 'tools', key: 'name' },
  'prompts/list': { kind: 'prompts', field: 'prompts', key: 'name' },
  'resources/list': { kind: 'resources', field: 'resources', key: 'uri' },
  'resources/templates/list': { kind: 'resources', field: 'resourceTemplates', key: 'uriTemplate' },
};

const NAMED: Readonly<Record<string, { readonly kind: ItemKind; readonly key: 'name' | 'uri' }>> = {
  'tools/call': { kind: 'tools', key: 'name' },
  'prompts/get': { kind: 'prompts', key: 'name' },
  'resources/read': { kind: 'resources', key: 'uri' },
  'resources/subscribe': { kind: 'resources', key: 'uri' },
  'resources/unsubscribe': { kind: 'resources', key: 'uri' },
};

/** A buffered answer larger than this is not a list or an "unknown" error we can rewrite. */
const MAX_BUFFERED = 16 * 1024 * 1024;

/** What a stand-in name looks like: `mcpgw-hidden-` and 18 hex digits (resources: a `:unknown` scheme part after it). */
const STAND_IN = /mcpgw-hidden-[0-9a-f]{18}(?::unknown)?/g;

/** How an upstream's answer is rewritten. */
export interface AnswerPlan {
  /** JSON-RPC id (as a key) of each list request → what to rewrite in its result. */
  readonly lists: ReadonlyMap<string, ListSpec>;
  /**
   * A stream read from the upstream again, whose requests are not known here: every answer whose
   * result holds a list field is taken for a page of that list.
   */
  readonly byShape?: boolean;
  /** Stand-in → real name, to restore in the answer. */
  readonly masks: readonly (readonly [string, string])[];
  /** The items to publish of one page of a list; undefined when they stay as they are. */
  items(spec: ListSpec, items: readonly unknown[]): unknown[] | undefined;
}

/** One item a request names: where in its params, and what. */
export interface Named {
  readonly kind: ItemKind;
  readonly name: string;
  readonly path: readonly string[];
}

/** The items one message names (a 2026-07-28 subscriptions/listen names each resource it subscribes to). */
function namedItems(m: Envelope): Named[] {
  if (m.method === undefined) return [];
  const named = NAMED[m.method];
  if (named) {
    const name = m.params?.[named.key];
    return typeof name === 'string' ? [{ kind: named.kind, name, path: [named.key] }] : [];
  }
  if (m.method === 'completion/complete') {
    const ref = m.params?.ref as { type?: unknown; name?: unknown; uri?: unknown } | undefined;
    if (ref?.type === 'ref/prompt' && typeof ref.name === 'string') return [{ kind: 'prompts', name: ref.name, path: ['ref', 'name'] }];
    if (ref?.type === 'ref/resource' && typeof ref.uri === 'string') return [{ kind: 'resources', name: ref.uri, path: ['ref', 'uri'] }];
    return [];
  }
  if (m.method === 'subscriptions/listen') {
    const uris = (m.params?.notifications as { resourceSubscriptions?: unknown } | undefined)?.resourceSubscriptions;
    if (!Array.isArray(uris)) return [];
    return uris.flatMap((uri, i) => (typeof uri === 'string' ? [{ kind: 'resources' as const, name: uri, path: ['notifications', 'resourceSubscriptions', String(i)] }] : []));
  }
  return [];
}

/** A request as it goes upstream, and what its answer needs. */
export interface RequestRewrite {
  readonly messages: readonly Envelope[];
  readonly lists: ReadonlyMap<string, ListSpec>;
  readonly masks: readonly (readonly [string, string])[];
  /** Names the caller asked for that are hidden (for the audit log). */
  readonly hidden: readonly string[];
}

/**
 * Rewrites the items a request names: `upstreamName` gives the name to send (undefined: hidden,
 * swapped for a stand-in); `edit` may change a message's params further. Undefined when the
 * request has neither a list to rewrite nor anything changed: the hot path stays as it was.
 */
export function rewriteRequest(
  messages: readonly Envelope[],
  upstreamName: (item: Named) => string | undefined,
  edit?: (m: Envelope, params: Record<string, unknown> | undefined) => Record<string, unknown> | undefined,
): RequestRewrite | undefined {
  let lists: Map<string, ListSpec> | undefined;
  let out: Envelope[] | undefined;
  const masks: [string, string][] = [];
  const hidden: string[] = [];
  for (const [index, m] of messages.entries()) {
    // Notifications too: `tools/call` without an id is no MCP notification, but an upstream
    // that runs it anyway must not see a hidden name.
    if (m.method === undefined) continue;
    const list = LISTS[m.method];
    if (list) {
      if (m.kind === 'request') (lists ??= new Map()).set(idKey(m.id), list);
      continue;
    }
    let params = m.params;
    for (const item of namedItems(m)) {
      const name = upstreamName(item);
      if (name === item.name) continue;
      const sent = name ?? standIn(item.kind);
      if (name === undefined) {
        masks.push([sent, item.name]);
        hidden.push(item.name);
      }
      params = replaceAt(params!, item.path, sent);
    }
    if (edit) params = edit(m, params);
    if (params !== m.params) (out ??= [...messages])[index] = withParams(m, params!);
  }
  if (!lists && !out) return undefined;
  return { messages: out ?? messages, lists: lists ?? NO_LISTS, masks, hidden };
}

/** No list to rewrite (shared: a read-only empty map). */
export const NO_LISTS: ReadonlyMap<string, ListSpec> = new Map();

/** A URI as a URL parser (an SDK server's lookup) reads it: `DEMO://x`, ` demo://x` and `file:///a/../b` are `demo://x` and `file:///b`. */
export function canonicalUri(uri: string): string {
  try {
    return new URL(uri).href;
  } catch {
    return uri;
  }
}

/**
 * The other URIs an upstream may take `uri` for: as a URL parser reads it, and with its percent
 * escapes decoded first (a server that serves paths decodes them: `file:///%73ecret/x`,
 * `file:///public/..%2Fsecret/x` are `file:///secret/x` to it). A name filter must pass each.
 */
export function uriReadings(uri: string): string[] {
  const canonical = canonicalUri(uri);
  const decoded = uri.replace(/(?:%[0-9a-fA-F]{2})+/g, decodeEscapes);
  return [...new Set([canonical, decoded, canonicalUri(decoded)])].filter((u) => u !== uri);
}

function decodeEscapes(escapes: string): string {
  try {
    return decodeURIComponent(escapes);
  } catch {
    // Not UTF-8: each byte as the Latin-1 character it is (still no escape left to hide behind).
    return escapes.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  }
}

/** A name that cannot exist upstream, for an item the caller may not know. */
function standIn(kind: ItemKind): string {
  const stand = `mcpgw-hidden-${randomBytes(9).toString('hex')}`;
  return kind === 'resources' ? `${stand}:unknown` : stand;
}

/** A copy of `node` with the value at `path` replaced; the caller's objects are left as they were. */
function replaceAt(node: Record<string, unknown>, path: readonly string[], value: unknown): Record<string, unknown> {
  const [step, ...rest] = path as [string, ...string[]];
  const copy: Record<string, unknown> = Array.isArray(node) ? ([...node] as unknown as Record<string, unknown>) : { ...node };
  copy[step] = rest.length === 0 ? value : replaceAt(node[step] as Record<string, unknown>, rest, value);
  return copy;
}

/** The message with other params (what goes upstream is written from the message, src/protocol/wire.ts). */
function withParams(m: Envelope, params: Record<string, unknown>): Envelope {
  return { ...m, params, message: { ...m.message, params } };
}

/** The request with other messages, its body written from them (a batch stays a batch). */
export function withMessages(req: ClientRequest, messages: readonly Envelope[]): ClientRequest {
  return { ...req, messages, body: messages.length > 0 ? wireBody(messages, isBatchBody(req.body)) : undefined };
}

/** Applies a plan to the upstream's answer: JSON is buffered and rewritten, SSE rewritten per event. */
export async function rewriteAnswer(res: UpstreamResponse, plan: AnswerPlan): Promise<UpstreamResponse> {
  if (res.body === null) return res;
  const contentType = res.headers['content-type'] ?? '';
  const headers = { ...res.headers };
  delete headers['content-length'];
  if (contentType.startsWith('text/event-stream') && typeof res.body !== 'string') {
    // pipeline, not pipe: a client that goes away must release the upstream stream too.
    const filtered = new SseListFilter(plan);
    pipeline(res.body, filtered, () => {});
    return { ...res, headers, body: filtered };
  }
  const text = typeof res.body === 'string' ? res.body : await readAll(res.body);
  const out = contentType.startsWith('text/event-stream') ? filterSseText(text, plan) : filterJsonText(text, plan);
  return { ...res, headers, body: unmask(out, plan) };
}

/** Applies a plan to an SSE stream read from the upstream again (a resumed answer). */
export async function rewriteStream(body: Readable, plan: AnswerPlan): Promise<Readable> {
  const res = await rewriteAnswer({ status: 200, headers: { 'content-type': 'text/event-stream' }, body }, plan);
  return typeof res.body === 'string' ? Readable.from([res.body]) : (res.body as Readable);
}

/** Puts the real names back where the stand-ins went upstream: one pass over the text, whatever the number of names. */
function unmask(text: string, plan: AnswerPlan): string {
  if (plan.masks.length === 0 || !text.includes('mcpgw-hidden-')) return text;
  const reals = new Map(plan.masks);
  return text.replace(STAND_IN, (fake) => {
    const real = reals.get(fake);
    return real === undefined ? fake : JSON.stringify(real).slice(1, -1);
  });
}

async function readAll(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > MAX_BUFFERED) {
      discard(body);
      throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', 'a list result larger than 16 MiB');
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const BY_FIELD: ReadonlyMap<string, ListSpec> = new Map(Object.values(LISTS).map((spec) => [spec.field, spec]));

/** The list a response answers, by its id, or (byShape) by the list field its result holds. */
function specOf(m: { id?: unknown; result: Record<string, unknown> }, plan: AnswerPlan): ListSpec | undefined {
  const spec = plan.lists.get(idKey(m.id));
  // (A tool's result may hold anything: one with `content` is not taken for a list.)
  if (spec || !plan.byShape || 'content' in m.result) return spec;
  for (const [field, s] of BY_FIELD) if (Array.isArray(m.result[field])) return s;
  return undefined;
}

/** Rewrites one message (or a batch array) in place; true when something changed. */
function filterMessage(msg: unknown, plan: AnswerPlan): boolean {
  if (Array.isArray(msg)) {
    let changed = false;
    for (const m of msg) changed = filterMessage(m, plan) || changed;
    return changed;
  }
  if ((plan.lists.size === 0 && !plan.byShape) || msg === null || typeof msg !== 'object') return false;
  const m = msg as { id?: unknown; method?: unknown; result?: Record<string, unknown> };
  if (m.method !== undefined || m.result === null || typeof m.result !== 'object') return false;
  const spec = specOf(m as { id?: unknown; result: Record<string, unknown> }, plan);
  const items = spec ? m.result[spec.field] : undefined;
  if (!spec || !Array.isArray(items)) return false;
  const kept = plan.items(spec, items);
  if (kept === undefined) return false;
  m.result[spec.field] = kept;
  return true;
}

function filterJsonText(text: string, plan: AnswerPlan): string {
  if (plan.lists.size === 0 && !plan.byShape) return text;
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return text;
  }
  return filterMessage(msg, plan) ? JSON.stringify(msg) : text;
}

/** One SSE event, rewritten when it answers a list request; `answered` counts such answers. */
function filterSseEvent(event: string, plan: AnswerPlan): { text: string; answered: number } {
  const parsed = sseMessage(event);
  if (!parsed) return { text: event, answered: 0 };
  const { msg, other } = parsed;
  const answered = (Array.isArray(msg) ? msg : [msg]).filter((m) => isListAnswer(m, plan)).length;
  if (!filterMessage(msg, plan)) return { text: event, answered };
  return { text: [...other, `data: ${JSON.stringify(msg)}`].join('\n'), answered };
}

function isListAnswer(m: unknown, plan: AnswerPlan): boolean {
  const r = m as { id?: unknown; method?: unknown } | null;
  return r !== null && typeof r === 'object' && r.method === undefined && 'id' in r && plan.lists.has(idKey(r.id));
}

function filterSseText(text: string, plan: AnswerPlan): string {
  if (plan.lists.size === 0 && !plan.byShape) return text;
  const events = new SseSplitter();
  let out = '';
  events.push(text, (event, end) => void (out += (event ? filterSseEvent(event, plan).text : event) + end));
  return out + events.end();
}

/** Streams SSE through, rewriting only the events that answer a list request of this plan. */
class SseListFilter extends Transform {
  readonly #plan: AnswerPlan;
  readonly #events = new SseSplitter();
  #open: number;

  constructor(plan: AnswerPlan) {
    super();
    this.#plan = plan;
    // byShape: any event may answer a list, to the end of the stream.
    this.#open = plan.byShape ? Infinity : plan.lists.size;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    // Every list answered and no name to put back: the rest passes as it comes (still decoded,
    // so no character is cut). Names are put back event by event (a stream may never end).
    const masks = this.#plan.masks.length > 0;
    if (this.#open === 0 && !masks) return done(null, this.#events.decode(chunk) || undefined);
    let out = '';
    try {
      this.#events.push(chunk, (event, end) => {
        let text = event;
        if (this.#open > 0) {
          const f = filterSseEvent(event, this.#plan);
          this.#open -= f.answered;
          text = f.text;
        }
        out += (masks ? unmask(text, this.#plan) : text) + end;
      });
    } catch (err) {
      // An event past MAX_EVENT_CHARS: the stream ends here (a throw would escape the stream).
      return done(err as Error);
    }
    if (this.#open === 0 && !masks) out += this.#events.take();
    done(null, out || undefined);
  }

  override _flush(done: TransformCallback): void {
    done(null, this.#events.end() || undefined);
  }
}
