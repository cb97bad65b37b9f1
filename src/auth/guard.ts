import { randomBytes } from 'node:crypto';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import type { ServerPolicy } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import { idKey, type Envelope } from '../protocol/jsonrpc.ts';
import { SseSplitter, sseMessage } from '../protocol/sse.ts';
import type { UpstreamResponse } from '../upstream/types.ts';
import { mayUse, type ItemKind } from './policy.ts';
import type { Principal } from './principal.ts';
import { discard } from '../upstream/body.ts';

/**
 * Per-item policy on the wire. Requests that name a tool, resource or prompt the caller may not
 * use are sent upstream with that name swapped for one that cannot exist, and the name is put
 * back in the answer: the caller gets exactly the upstream's own "unknown" answer, whatever form
 * it takes, and nothing hidden runs. List results are parsed and re-serialized without the items
 * the caller may not use — only for list methods; every other byte passes through untouched.
 */

interface ListSpec {
  readonly kind: ItemKind;
  readonly field: string;
  readonly key: string;
}

const LISTS: Readonly<Record<string, ListSpec>> = {
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

export interface GuardPlan {
  /** The messages to send upstream (the caller's unless a hidden name was swapped). */
  readonly messages: readonly Envelope[];
  /** JSON-RPC id (as a key) of each list request → what to filter in its result. */
  readonly lists: ReadonlyMap<string, ListSpec>;
  /** Stand-in → real name, to restore in the answer. */
  readonly masks: readonly (readonly [string, string])[];
  /** Names the caller asked for but may not use (for the audit log). */
  readonly hidden: readonly string[];
  readonly policy: ServerPolicy;
  readonly principal: Principal;
}

/** What a stand-in name looks like: `mcpgw-hidden-` and 18 hex digits (resources: a `:unknown` scheme part after it). */
const STAND_IN = /mcpgw-hidden-[0-9a-f]{18}(?::unknown)?/g;

interface Denied {
  readonly kind: ItemKind;
  readonly name: string;
  readonly path: readonly string[];
}

/** undefined when the request needs no guarding: the hot path stays as it was. */
export function guardRequest(policy: ServerPolicy, principal: Principal, messages: readonly Envelope[]): GuardPlan | undefined {
  let lists: Map<string, ListSpec> | undefined;
  let denied: Map<number, Denied[]> | undefined;
  const deny = (index: number, d: Denied) => {
    denied ??= new Map();
    const at = denied.get(index);
    if (at) at.push(d);
    else denied.set(index, [d]);
  };
  for (const [index, m] of messages.entries()) {
    // Notifications too: `tools/call` without an id is no MCP notification, but an upstream
    // that runs it anyway must not see a hidden name.
    if (m.method === undefined) continue;
    const list = LISTS[m.method];
    if (list) {
      if (m.kind === 'request') (lists ??= new Map()).set(idKey(m.id), list);
      continue;
    }
    if (m.method === 'subscriptions/listen') {
      // 2026-07-28: each resource subscription names a resource.
      const uris = (m.params?.notifications as { resourceSubscriptions?: unknown } | undefined)?.resourceSubscriptions;
      if (Array.isArray(uris)) {
        uris.forEach((uri, i) => {
          if (typeof uri === 'string' && !mayUse(policy, 'resources', uri, principal)) deny(index, { kind: 'resources', name: uri, path: ['notifications', 'resourceSubscriptions', String(i)] });
        });
      }
      continue;
    }
    const target = namedTarget(m);
    if (target && !mayUse(policy, target.kind, target.name, principal)) deny(index, target);
  }
  if (!lists && !denied) return undefined;
  const masks: [string, string][] = [];
  const hidden: string[] = [];
  let out = messages;
  if (denied) {
    const swapped = [...messages];
    for (const [index, ds] of denied) {
      let params = messages[index]!.params!;
      for (const d of ds) {
        const stand = `mcpgw-hidden-${randomBytes(9).toString('hex')}`;
        const fake = d.kind === 'resources' ? `${stand}:unknown` : stand;
        masks.push([fake, d.name]);
        hidden.push(d.name);
        params = replaceAt(params, d.path, fake);
      }
      const m = messages[index]!;
      swapped[index] = { ...m, params, message: { ...m.message, params } };
    }
    out = swapped;
  }
  return { messages: out, lists: lists ?? new Map(), masks, hidden, policy, principal };
}

/** A copy of `node` with the value at `path` replaced; the caller's objects are left as they were. */
function replaceAt(node: Record<string, unknown>, path: readonly string[], value: string): Record<string, unknown> {
  const [step, ...rest] = path as [string, ...string[]];
  const copy: Record<string, unknown> = Array.isArray(node) ? ([...node] as unknown as Record<string, unknown>) : { ...node };
  copy[step] = rest.length === 0 ? value : replaceAt(node[step] as Record<string, unknown>, rest, value);
  return copy;
}

/** The part of a plan a stream needs once its answer has to be read from the upstream again (StreamInfo.guard). */
export function serializeGuard(plan: GuardPlan): string {
  return JSON.stringify({ lists: [...plan.lists].map(([id, spec]) => [id, spec.field]), masks: plan.masks });
}

/**
 * The plan again, for the caller resuming the stream (sessions are bound to their principal, so
 * it is the caller who asked); undefined when there is nothing to filter for this caller.
 */
export function restoreGuard(serialized: string, policy: ServerPolicy | undefined, principal: Principal | undefined): GuardPlan | undefined {
  if (!policy?.filtersItems || !principal) return undefined;
  const { lists, masks } = JSON.parse(serialized) as { lists: [string, string][]; masks: [string, string][] };
  const byField = new Map(Object.values(LISTS).map((spec) => [spec.field, spec]));
  const restored = new Map<string, ListSpec>();
  for (const [id, field] of lists) {
    const spec = byField.get(field);
    if (spec) restored.set(id, spec);
  }
  return { messages: [], lists: restored, masks, hidden: [], policy, principal };
}

/** Applies a plan to an SSE stream read from the upstream again (a resumed answer). */
export async function guardStream(body: Readable, plan: GuardPlan): Promise<Readable> {
  const res = await guardResponse({ status: 200, headers: { 'content-type': 'text/event-stream' }, body }, plan);
  return typeof res.body === 'string' ? Readable.from([res.body]) : (res.body as Readable);
}

function namedTarget(m: Envelope): { kind: ItemKind; name: string; path: readonly string[] } | undefined {
  const named = NAMED[m.method!];
  if (named) {
    const name = m.params?.[named.key];
    return typeof name === 'string' ? { kind: named.kind, name, path: [named.key] } : undefined;
  }
  if (m.method === 'completion/complete') {
    const ref = m.params?.ref as { type?: unknown; name?: unknown; uri?: unknown } | undefined;
    if (ref?.type === 'ref/prompt' && typeof ref.name === 'string') return { kind: 'prompts', name: ref.name, path: ['ref', 'name'] };
    if (ref?.type === 'ref/resource' && typeof ref.uri === 'string') return { kind: 'resources', name: ref.uri, path: ['ref', 'uri'] };
  }
  return undefined;
}

/** Applies the plan to the upstream's answer: JSON is buffered and rewritten, SSE rewritten per event. */
export async function guardResponse(res: UpstreamResponse, plan: GuardPlan): Promise<UpstreamResponse> {
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

/** Puts the real names back where the stand-ins went upstream: one pass over the text, whatever the number of names. */
function unmask(text: string, plan: GuardPlan): string {
  if (!text.includes('mcpgw-hidden-')) return text;
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

/** Filters one message (or a batch array) in place; true when something was removed. */
function filterMessage(msg: unknown, plan: GuardPlan): boolean {
  if (Array.isArray(msg)) {
    let changed = false;
    for (const m of msg) changed = filterMessage(m, plan) || changed;
    return changed;
  }
  if (plan.lists.size === 0 || msg === null || typeof msg !== 'object') return false;
  const m = msg as { id?: unknown; method?: unknown; result?: Record<string, unknown> };
  if (m.method !== undefined || m.result === undefined) return false;
  const spec = plan.lists.get(idKey(m.id));
  const items = spec ? m.result[spec.field] : undefined;
  if (!spec || !Array.isArray(items)) return false;
  const kept = items.filter((item) => {
    const name = (item as Record<string, unknown> | null)?.[spec.key];
    return typeof name === 'string' && mayUse(plan.policy, spec.kind, name, plan.principal);
  });
  if (kept.length === items.length) return false;
  m.result[spec.field] = kept;
  return true;
}

function filterJsonText(text: string, plan: GuardPlan): string {
  if (plan.lists.size === 0) return text;
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return text;
  }
  return filterMessage(msg, plan) ? JSON.stringify(msg) : text;
}

/** One SSE event, rewritten when it answers a list request; `answered` counts such answers. */
function filterSseEvent(event: string, plan: GuardPlan): { text: string; answered: number } {
  const parsed = sseMessage(event);
  if (!parsed) return { text: event, answered: 0 };
  const { msg, other } = parsed;
  const answered = (Array.isArray(msg) ? msg : [msg]).filter((m) => isListAnswer(m, plan)).length;
  if (!filterMessage(msg, plan)) return { text: event, answered };
  return { text: [...other, `data: ${JSON.stringify(msg)}`].join('\n'), answered };
}

function isListAnswer(m: unknown, plan: GuardPlan): boolean {
  const r = m as { id?: unknown; method?: unknown } | null;
  return r !== null && typeof r === 'object' && r.method === undefined && 'id' in r && plan.lists.has(idKey(r.id));
}

function filterSseText(text: string, plan: GuardPlan): string {
  if (plan.lists.size === 0) return text;
  const events = new SseSplitter();
  let out = '';
  events.push(text, (event, end) => void (out += (event ? filterSseEvent(event, plan).text : event) + end));
  return out + events.end();
}

/** Streams SSE through, rewriting only the events that answer a list request of this plan. */
class SseListFilter extends Transform {
  readonly #plan: GuardPlan;
  readonly #events = new SseSplitter();
  #open: number;

  constructor(plan: GuardPlan) {
    super();
    this.#plan = plan;
    this.#open = plan.lists.size;
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
