import { GATEWAY_ORIGINATED } from '../pipeline/admission.ts';
import { randomBytes } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { GatewayError, type JsonRpcId } from '../errors.ts';
import { isBatchBody } from '../protocol/jsonrpc.ts';
import { ITEM_KEYS, MAX_NAME_LENGTH, mayBeShortened, mergeLists, namePrefix, prefixedUri, schemePrefix, splitName, splitUri, type ItemKind, type MemberNames } from '../protocol/names.ts';
import { isSessionRevision, SESSION_REVISIONS } from '../protocol/revisions.ts';
import type { SessionClaims } from '../session/token.ts';
import type { UpstreamEvents } from './events.ts';
import { answers, collectMessages, isSse, readSseEvents } from './messages.ts';
import { callerTokenOf } from './token-exchange.ts';
import { forCaller, ownRequest, SSE_HEADERS, type ClientRequest, type ReplicaSnapshot, type SessionPlacement, type Upstream, type UpstreamHealth, type UpstreamResponse } from './types.ts';
import { discard, drain } from './body.ts';

interface Member extends MemberNames {
  readonly server: string;
  readonly upstream: Upstream;
}

type Json = Record<string, unknown>;

/** Whom a virtual server's discovery is done for: the request that opened their session, and their principal. */
interface ProbeCaller {
  readonly req: ClientRequest;
  readonly principal: string;
}

/** How a virtual server reaches its members for a caller (src/pipeline/members.ts). */
export interface MemberCalls {
  /**
   * A caller's request to a member: the pipeline's chain again, as the member's own request, so
   * its auth policy, rate limits, cache and time limits hold.
   */
  send(upstream: Upstream, claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse>;
  /**
   * Whether the member's rule for the server as a whole lets the caller of `req` in (fail
   * closed: a caller that cannot be checked is let into a member with no rule only). A member
   * that refuses the caller gets no session of it: its initialize answer does not go into the
   * virtual server's, nor its standalone stream into the merged one.
   */
  admits(member: string, req: ClientRequest): boolean;
}

const LISTS: Readonly<Record<string, ItemKind>> = {
  'tools/list': 'tools',
  'prompts/list': 'prompts',
  'resources/list': 'resources',
  'resources/templates/list': 'resourceTemplates',
};
const BY_NAME: Readonly<Record<string, 'tools' | 'prompts'>> = { 'tools/call': 'tools', 'prompts/get': 'prompts' };
const BY_URI = new Set(['resources/read', 'resources/subscribe', 'resources/unsubscribe']);
const MAX_PAGES = 100;
const LATEST_SESSION_REVISION = SESSION_REVISIONS[SESSION_REVISIONS.length - 1]!;
const TABLES_MAX = 1_000;
/** A server→client request's id, tagged with the member that sent it: `<member>~<its id as JSON>`. */
const TAGGED_ID = /^(\d+)~(.+)$/s;
/** A discovery for a caller that failed is not tried again, for another caller, before this. */
const DISCOVER_AGAIN_MS = 30_000;

/**
 * compose: one published server over several others (`servers.<name>.compose`). A session of it
 * is a session with every member, opened at initialize and sealed into its id, so any replica
 * can serve it. Lists are the union of the members' (names prefixed, src/protocol/names.ts);
 * a call goes to the member that owns the name; notifications from any member — list_changed
 * included — reach the client, and server→client requests carry the member in their id so the
 * client's answer finds its way back.
 */
export class ComposedUpstream implements Upstream {
  readonly kind = 'virtual' as const;
  readonly #name: string;
  readonly #members: readonly Member[];
  readonly #events: UpstreamEvents;
  readonly #calls: MemberCalls;
  /** Per session and kind: virtual name → owner, for names only a list can resolve (shortened ones). */
  #tables = new Map<string, Map<string, { member: number; original: string }>>();
  readonly #reported = new Set<string>();
  /** Its discovery (discover()): to run for the first caller (a member exchanges callers' tokens), under way, or done. */
  readonly #forCaller: boolean;
  #discovery: 'waiting' | 'running' | 'done' = 'waiting';
  #discoveryFailedAt = 0;

  /** `opts.discoverForCaller`: a member gets a token for each caller (credentials.tokenExchange), so the gateway's own look needs one. */
  constructor(name: string, members: readonly { server: string; upstream: Upstream }[], events: UpstreamEvents, calls: MemberCalls, opts: { discoverForCaller?: boolean } = {}) {
    this.#name = name;
    this.#events = events;
    this.#calls = calls;
    this.#forCaller = opts.discoverForCaller === true;
    this.#members = members.map((m) => ({ ...m, prefix: namePrefix(m.server), scheme: schemePrefix(m.server) }));
  }

  /** A session of every member that lets the caller in (the others stay out of it: no session, nothing of their answer). */
  initialize(req: ClientRequest, sessionId: string, holder: string): Promise<{ response: UpstreamResponse; placement: SessionPlacement }> {
    // The discovery a member's token exchange kept waiting runs for this caller, beside its
    // session: on the token its request came with, else (a session the gateway pools for a
    // 2026-07-28 caller) the latest of the principal it is held for.
    if (this.#forCaller && this.#discovery === 'waiting' && Date.now() - this.#discoveryFailedAt >= DISCOVER_AGAIN_MS) this.#discover({ req, principal: callerTokenOf(req.headers)?.principal ?? holder });
    return this.#open(req, sessionId, holder, (m) => this.#calls.admits(m.server, req));
  }

  /**
   * Learns what the server publishes and reports it (events `composed`, `composeFailed`): at
   * once — or, when a member exchanges callers' tokens (which a request for no caller has none
   * of), on behalf of the first caller whose session opens (their exchanged token, as the era
   * probe), and again for a later caller if that one failed.
   */
  discover(): void {
    if (!this.#forCaller) this.#discover(undefined);
  }

  #discover(caller: ProbeCaller | undefined): void {
    this.#discovery = 'running';
    this.probe(caller).then(
      (r) => {
        this.#discovery = 'done';
        this.#events.emit('composed', { server: this.#name, ...r });
      },
      (err: unknown) => {
        this.#discovery = 'waiting';
        this.#discoveryFailedAt = Date.now();
        this.#events.emit('composeFailed', { server: this.#name, reason: (err as Error).message });
      },
    );
  }

  async #open(req: ClientRequest, sessionId: string, holder: string, admitted: (m: Member) => boolean): Promise<{ response: UpstreamResponse; placement: SessionPlacement }> {
    const init = req.messages[0]!;
    const opened = await Promise.allSettled(this.#members.map((m, i) => (admitted(m) ? m.upstream.initialize(req, memberId(sessionId, i), holder) : undefined)));
    const placements = opened.map((o) => (o.status === 'fulfilled' ? o.value?.placement : undefined));
    const placement: SessionPlacement = { upstream: 'compose', upstreamSession: JSON.stringify(placements.map((p) => (p ? [p.upstream, p.upstreamSession, p.node] : ['', '', '']))), node: '' };
    const claims = (id: string): SessionClaims => ({ id, server: this.#name, ...placement, principal: '', protocolVersion: req.protocolVersion, issuedAt: 0 });
    const abandon = async () => {
      await this.delete(claims(sessionId), req).catch(() => undefined);
    };
    const failed = opened.find((o) => o.status === 'rejected');
    if (failed) {
      await abandon();
      throw failed.reason;
    }
    const answers_ = await Promise.all(
      opened.map(async (o) => {
        const value = (o as PromiseFulfilledResult<{ response: UpstreamResponse } | undefined>).value;
        return value && { answer: firstAnswer(await collectMessages(value.response, (m) => answers(m, init.id)), init.id) };
      }),
    );
    const refused = answers_.find((a) => a && !a.answer?.result);
    if (refused !== undefined) {
      await abandon();
      return { response: json(refused.answer ?? { jsonrpc: '2.0', id: init.id, error: { code: -32603, message: 'A member server did not answer initialize' } }), placement };
    }
    const results = answers_.map((a) => a?.answer!.result as Json | undefined);
    return { response: json({ jsonrpc: '2.0', id: init.id, result: this.#mergeInitialize(results, typeof init.params?.protocolVersion === 'string' ? init.params.protocolVersion : req.protocolVersion) }), placement };
  }

  async post(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse> {
    if (req.messages.length !== 1 || isBatchBody(req.body)) throw new GatewayError('MCPGW_ERR_BATCH_NOT_SUPPORTED', 'a virtual server takes one message per request');
    const m = req.messages[0]!;
    const message = m.message as Json;
    const members = this.#claims(claims);
    if (m.kind === 'notification') {
      // cancelled, initialized, roots/list_changed…: every member hears it (one of them knows the request).
      await Promise.all(members.map((c, i) => inSession(c) && this.#calls.send(this.#members[i]!.upstream, c, memberRequest(req, message))));
      return ACCEPTED;
    }
    if (m.kind === 'response') {
      const owner = untag(m.id);
      if (!owner || !members[owner.member]) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a response to a request this session never sent');
      return this.#calls.send(this.#members[owner.member]!.upstream, members[owner.member]!, memberRequest(req, { ...message, id: owner.id }));
    }
    const method = m.method!;
    const params = (message.params ?? {}) as Json;
    if (method === 'ping') return json({ jsonrpc: '2.0', id: m.id, result: {} });
    if (LISTS[method]) return json({ jsonrpc: '2.0', id: m.id, result: { [LISTS[method]!]: (await this.#list(claims, members, req, LISTS[method]!)).items } });
    if (method === 'logging/setLevel') {
      await Promise.all(members.map((c, i) => inSession(c) && this.#calls.send(this.#members[i]!.upstream, c, memberRequest(req, message)).then(drainAnswer)));
      return json({ jsonrpc: '2.0', id: m.id, result: {} });
    }
    const target = await this.#target(claims, members, req, method, params);
    if (!target) return json({ jsonrpc: '2.0', id: m.id, error: unknownTarget(method, params) });
    const res = await this.#calls.send(this.#members[target.member]!.upstream, members[target.member]!, memberRequest(req, { ...message, params: target.params }));
    return this.#fromMember(target.member, res, method === 'resources/read' ? m.id : undefined);
  }

  async get(claims: SessionClaims, req: ClientRequest, lastEventId?: string): Promise<UpstreamResponse> {
    const members = this.#claims(claims);
    // An event id names its member: resume that member's stream only (a POST answer's stream).
    const tag = lastEventId ? TAGGED_ID.exec(lastEventId) : null;
    // Fail closed: only the streams of members in the session that let the caller in now.
    const streamable = (i: number) => members[i] !== undefined && inSession(members[i]) && this.#calls.admits(this.#members[i]!.server, req);
    const targets = tag ? [Number(tag[1])] : members.map((_, i) => i).filter(streamable);
    if (tag && !streamable(targets[0]!)) throw new GatewayError('MCPGW_ERR_FORBIDDEN', `member "${this.#members[targets[0]!]?.server ?? tag[1]}": not in this session for this caller`);
    const opened = await Promise.allSettled(targets.map((i) => this.#members[i]!.upstream.get(members[i]!, req, tag ? tag[2] : undefined)));
    const streams: { member: number; body: Readable }[] = [];
    let other: UpstreamResponse | undefined;
    for (const [n, o] of opened.entries()) {
      if (o.status === 'rejected') {
        for (const s of streams) discard(s.body);
        throw o.reason;
      }
      if (o.value.status === 200 && isSse(o.value)) streams.push({ member: targets[n]!, body: o.value.body });
      else other ??= o.value;
    }
    if (streams.length === 0) return other ?? { status: 405, headers: { allow: 'POST, DELETE' }, body: null };
    const merged = new PassThrough();
    let open = streams.length;
    merged.once('close', () => {
      for (const s of streams) discard(s.body);
    });
    for (const s of streams) {
      this.#relay(
        s.member,
        s.body,
        merged,
        undefined,
        () => {
          if (--open === 0) merged.end();
        },
        tag !== null,
      );
    }
    return { status: 200, headers: { ...SSE_HEADERS }, body: merged };
  }

  async delete(claims: SessionClaims, req: ClientRequest): Promise<UpstreamResponse> {
    this.#forget(claims.id);
    const members = this.#claims(claims);
    await Promise.allSettled(members.map((c, i) => (c.upstream ? this.#members[i]!.upstream.delete(c, req).then(drainAnswer) : undefined)));
    return { status: 200, headers: {}, body: null };
  }

  /** The gateway session ended: members holding something on this replica (stdio children, SSE connections) let it go. */
  end(claims: SessionClaims): void {
    this.#forget(claims.id);
    for (const [i, c] of this.#claims(claims).entries()) {
      const upstream = this.#members[i]!.upstream as Upstream & { end?: (id: string, reason: string) => void };
      upstream.end?.(c.id, 'session ended');
    }
  }

  /** A new session needs every member: the worst member's health, a member without replicas first. */
  health(): UpstreamHealth {
    let worst: UpstreamHealth = 'up';
    for (const m of this.#members) {
      const h = m.upstream.health();
      if (h === 'no_healthy_upstream') return h;
      if (h === 'at_capacity') worst = h;
    }
    return worst;
  }

  /** The members report their replicas under their own names. */
  replicaStates(): readonly ReplicaSnapshot[] {
    return [];
  }

  async close(): Promise<void> {
    this.#tables.clear();
  }

  /**
   * Opens a session with every member, lists everything and closes it again: the names this
   * server publishes, and collisions among them, are known (and reported). `caller`: whom it is
   * done for (their request's validated token goes with it, else their latest, exchanged by the
   * members that exchange tokens; a member whose rule refuses them is left out); else the
   * gateway's own, of every member.
   */
  async probe(caller?: ProbeCaller): Promise<{ items: number; shortened: number; collisions: number }> {
    const id = `probe-${randomBytes(6).toString('hex')}`;
    const init = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LATEST_SESSION_REVISION, capabilities: {}, clientInfo: { name: 'mcp-gateway-probe', version: '1' } } };
    const own: ClientRequest = { headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json' }, body: undefined, messages: [], protocolVersion: LATEST_SESSION_REVISION, admission: GATEWAY_ORIGINATED };
    // For a caller: the members' sessions are theirs (held, and their token exchanged, for them).
    const principal = caller?.principal ?? '';
    const base = caller ? forCaller(own, caller.req.headers, principal) : own;
    const admitted = caller ? (m: Member) => this.#calls.admits(m.server, caller.req) : () => true;
    const { placement } = await this.#open(memberRequest(base, init), id, principal || GATEWAY_HOLDER, admitted);
    const claims: SessionClaims = { id, server: this.#name, ...placement, principal, protocolVersion: LATEST_SESSION_REVISION, issuedAt: 0 };
    const req: ClientRequest = { ...base, headers: { ...base.headers, 'mcp-protocol-version': LATEST_SESSION_REVISION } };
    try {
      await this.post(claims, memberRequest(req, { jsonrpc: '2.0', method: 'notifications/initialized' }));
      let items = 0;
      let shortened = 0;
      let collisions = 0;
      for (const kind of Object.values(LISTS)) {
        const merged = await this.#list(claims, this.#claims(claims), req, kind);
        items += merged.items.length;
        collisions += merged.collisions.length;
        shortened += merged.items.filter((item) => ITEM_KEYS[kind] === 'name' && mayBeShortened(String(item.name))).length;
      }
      return { items, shortened, collisions };
    } finally {
      await this.delete(claims, req);
      this.end(claims);
    }
  }

  /** The members' initialize answers merged (`results[i]` undefined: member i is not in the session). */
  #mergeInitialize(all: readonly (Json | undefined)[], asked: string): Json {
    const members = all.flatMap((r, i) => (r ? [{ r, m: this.#members[i]! }] : []));
    const results = members.map(({ r }) => r);
    const capabilities: Record<string, Json> = {};
    for (const r of results) {
      for (const [k, v] of Object.entries((r.capabilities ?? {}) as Record<string, Json>)) {
        const merged: Json = (capabilities[k] ??= {});
        // listChanged / subscribe: offered when any member offers it.
        for (const [flag, on] of Object.entries(v ?? {})) merged[flag] = merged[flag] === true || on;
      }
    }
    // The oldest revision any member agreed to: every member accepts it in MCP-Protocol-Version.
    // None in the session: the client's own, when the gateway speaks it.
    const versions = results.map((r) => String(r.protocolVersion ?? LATEST_SESSION_REVISION)).sort();
    if (versions.length === 0) versions.push(isSessionRevision(asked) ? asked : LATEST_SESSION_REVISION);
    const instructions = members
      .map(({ r, m }) => (typeof r.instructions === 'string' && r.instructions ? `## ${m.server} (names prefixed ${m.prefix}__)\n${r.instructions}` : ''))
      .filter(Boolean)
      .join('\n\n');
    return {
      protocolVersion: versions[0],
      capabilities,
      serverInfo: { name: this.#name, version: '1.0.0' },
      ...(instructions ? { instructions } : {}),
    };
  }

  /** Every member's full list (all pages), merged; members without the list count as empty. */
  async #list(claims: SessionClaims, members: readonly SessionClaims[], req: ClientRequest, kind: ItemKind): Promise<ReturnType<typeof mergeLists>> {
    const method = Object.keys(LISTS).find((k) => LISTS[k] === kind)!;
    // A member not in the session (it refused the caller) counts as empty.
    const lists = await Promise.all(
      members.map((c, i) =>
        inSession(c)
          ? this.#fetchAll(i, c, req, method, kind).catch((err: unknown) => {
              if (err instanceof GatewayError && err.code === 'MCPGW_ERR_SESSION_NOT_FOUND') throw err;
              return undefined;
            })
          : undefined,
      ),
    );
    const merged = mergeLists(kind, this.#members, lists);
    if (merged.collisions.length > 0) {
      const fresh = merged.collisions.filter((n) => !this.#reported.has(`${kind}:${n}`));
      for (const n of fresh) this.#reported.add(`${kind}:${n}`);
      if (fresh.length > 0) this.#events.emit('collision', { server: this.#name, kind, names: fresh });
    }
    if (this.#tables.size >= TABLES_MAX) this.#tables = new Map();
    this.#tables.set(`${claims.id}:${kind}`, merged.table);
    return merged;
  }

  async #fetchAll(i: number, claims: SessionClaims, req: ClientRequest, method: string, field: string): Promise<Json[]> {
    const items: Json[] = [];
    let cursor: unknown;
    for (let page = 0; page < MAX_PAGES; page++) {
      const id = `mcpgw-${randomBytes(6).toString('hex')}`;
      const res = await this.#calls.send(this.#members[i]!.upstream, claims, memberRequest(req, { jsonrpc: '2.0', id, method, params: cursor === undefined ? {} : { cursor } }));
      const answer = firstAnswer(await collectMessages(res, (m) => answers(m, id)), id);
      if (!answer?.result) throw new Error(`${method} failed`);
      const result = answer.result as Json;
      if (Array.isArray(result[field])) items.push(...(result[field] as Json[]));
      cursor = result.nextCursor;
      if (typeof cursor !== 'string' || !cursor) break;
    }
    return items;
  }

  /** Which member a request is for, and its params with the member's own names. */
  async #target(claims: SessionClaims, members: readonly SessionClaims[], req: ClientRequest, method: string, params: Json): Promise<{ member: number; params: Json } | undefined> {
    if (BY_NAME[method]) {
      const owner = await this.#owner(claims, members, req, BY_NAME[method], params.name);
      return owner && { member: owner.member, params: { ...params, name: owner.original } };
    }
    if (BY_URI.has(method)) {
      const owner = typeof params.uri === 'string' ? splitUri(params.uri, this.#schemes()) : undefined;
      return owner && { member: owner.member, params: { ...params, uri: owner.uri } };
    }
    if (method === 'completion/complete') {
      const ref = (params.ref ?? {}) as Json;
      if (ref.type === 'ref/prompt') {
        const owner = await this.#owner(claims, members, req, 'prompts', ref.name);
        return owner && { member: owner.member, params: { ...params, ref: { ...ref, name: owner.original } } };
      }
      const owner = typeof ref.uri === 'string' ? splitUri(ref.uri, this.#schemes()) : undefined;
      return owner && { member: owner.member, params: { ...params, ref: { ...ref, uri: owner.uri } } };
    }
    return undefined;
  }

  async #owner(claims: SessionClaims, members: readonly SessionClaims[], req: ClientRequest, kind: 'tools' | 'prompts', name: unknown): Promise<{ member: number; original: string } | undefined> {
    // Only published names are served: a full name past 64 characters is published shortened,
    // and taking it too would let it slip past a policy rule written on the published name.
    if (typeof name !== 'string' || name.length > MAX_NAME_LENGTH) return undefined;
    if (mayBeShortened(name)) {
      const known = this.#tables.get(`${claims.id}:${kind}`)?.get(name) ?? (await this.#list(claims, members, req, kind)).table.get(name);
      if (known) return known;
    }
    const split = splitName(name, this.#members.map((m) => m.prefix));
    return split && { member: split.member, original: split.name };
  }

  /** A member's answer on its way to the client: server→client request ids tagged, URIs prefixed. */
  async #fromMember(i: number, res: UpstreamResponse, readId: JsonRpcId | undefined): Promise<UpstreamResponse> {
    if (isSse(res)) {
      const out = new PassThrough();
      out.once('close', () => discard(res.body));
      this.#relay(i, res.body, out, readId, () => out.end(), true);
      return { ...res, body: out };
    }
    if (readId === undefined || res.body === null) return res;
    const texts = await collectMessages(res);
    return { status: res.status, headers: { 'content-type': 'application/json' }, body: texts.length === 1 ? this.#rewrite(i, texts[0]!, readId) : `[${texts.map((t) => this.#rewrite(i, t, readId)).join(',')}]` };
  }

  /**
   * One member's stream into `out`, its event ids tagged with the member. With `positions` (the
   * stream answers a request: one member's only), an id without data (a priming event) and the
   * `retry:` go through too: a member that has its clients poll (SEP-1699) is polled at that id,
   * through get().
   */
  #relay(i: number, body: Readable, out: PassThrough, readId: JsonRpcId | undefined, done: () => void, positions = false): void {
    readSseEvents(
      body,
      (e) => {
        if (!e.data) {
          if (e.id && positions) out.write(`id: ${i}~${e.id}\ndata: \n\n`);
          return;
        }
        out.write(`${e.id ? `id: ${i}~${e.id}\n` : ''}event: message\ndata: ${this.#rewrite(i, e.data, readId)}\n\n`);
      },
      () => done(),
      positions ? (ms) => out.write(`retry: ${ms}\n\n`) : undefined,
    );
  }

  /** Rewrites one message from member `i` where the client must see virtual names or ids. */
  #rewrite(i: number, text: string, readId: JsonRpcId | undefined): string {
    let m: Json;
    try {
      m = JSON.parse(text) as Json;
    } catch {
      return text;
    }
    const scheme = this.#members[i]!.scheme;
    if (typeof m.method === 'string' && 'id' in m) return JSON.stringify({ ...m, id: `${i}~${JSON.stringify(m.id)}` });
    const params = m.params as Json | undefined;
    if (m.method === 'notifications/resources/updated' && typeof params?.uri === 'string') return JSON.stringify({ ...m, params: { ...params, uri: prefixedUri(scheme, params.uri) } });
    const contents = (m.result as Json | undefined)?.contents;
    if (readId !== undefined && m.method === undefined && answers(m, readId) && Array.isArray(contents)) {
      const rewritten = contents.map((c: Json) => (typeof c.uri === 'string' ? { ...c, uri: prefixedUri(scheme, c.uri) } : c));
      return JSON.stringify({ ...m, result: { ...(m.result as Json), contents: rewritten } });
    }
    return text;
  }

  #claims(claims: SessionClaims): SessionClaims[] {
    let placements: [string, string, string][];
    try {
      placements = JSON.parse(claims.upstreamSession) as [string, string, string][];
    } catch {
      throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND');
    }
    if (!Array.isArray(placements) || placements.length !== this.#members.length) throw new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'the virtual server changed');
    return placements.map(([upstream, upstreamSession, node], i) => ({ ...claims, id: memberId(claims.id, i), server: this.#members[i]!.server, upstream, upstreamSession, node }));
  }

  #schemes(): string[] {
    return this.#members.map((m) => m.scheme);
  }

  #forget(id: string): void {
    for (const kind of Object.values(LISTS)) this.#tables.delete(`${id}:${kind}`);
  }
}

const ACCEPTED: UpstreamResponse = { status: 202, headers: {}, body: null };

/** Whether a member has a session in the virtual one (one that refused its caller has none). */
function inSession(member: SessionClaims): boolean {
  return member.upstream !== '';
}

function memberId(session: string, i: number): string {
  return `${session}.${i}`;
}

/** The holder of sessions the gateway opens for itself (no caller's principal or address looks like it). */
const GATEWAY_HOLDER = '~gateway';

function json(message: unknown): UpstreamResponse {
  return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(message) };
}

/** A request to a member: the client's headers, a body of our own. */
function memberRequest(req: ClientRequest, message: Json): ClientRequest {
  return ownRequest(req.headers, message, req.protocolVersion, req.admission);
}

function firstAnswer(texts: readonly string[], id: unknown): Json | undefined {
  for (const t of texts) {
    try {
      const m = JSON.parse(t) as Json;
      if (answers(m, id)) return m;
    } catch {
      // not a message: skip
    }
  }
  return undefined;
}

/** The member and original id of a tagged server→client request id. */
function untag(id: JsonRpcId): { member: number; id: JsonRpcId } | undefined {
  const tag = typeof id === 'string' ? TAGGED_ID.exec(id) : null;
  if (!tag) return undefined;
  try {
    return { member: Number(tag[1]), id: JSON.parse(tag[2]!) as JsonRpcId };
  } catch {
    return undefined;
  }
}

async function drainAnswer(res: UpstreamResponse): Promise<void> {
  if (res.body && typeof res.body !== 'string') drain(res.body);
}

function unknownTarget(method: string, params: Json): Json {
  if (BY_NAME[method] || BY_URI.has(method) || method === 'completion/complete') {
    const what = method === 'tools/call' ? `Tool ${String(params.name)} not found` : method === 'prompts/get' ? `Prompt ${String(params.name)} not found` : `Resource ${String(params.uri ?? '')} not found`;
    return { code: -32602, message: what };
  }
  return { code: -32601, message: `Method not found: ${method}` };
}
