import type { ServerResponse } from 'node:http';
import { GatewayError } from '../errors.ts';
import type { LoggedEvent } from '../events/log.ts';
import { SessionFeed, tailSession } from '../events/session-stream.ts';
import { GATEWAY_ORIGINATED, type Admission } from '../pipeline/admission.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { LEGACY_REVISION } from '../protocol/revisions.ts';
import type { SessionClaims } from '../session/token.ts';
import { discard } from '../upstream/body.ts';
import { HolderCounts } from '../upstream/holders.ts';
import { isSse, readSseEvents } from '../upstream/messages.ts';
import { clientRequest, type ClientRequest, type UpstreamResponse } from '../upstream/types.ts';
import type { GatewayContext } from './context.ts';

/** What this replica knows of one legacy session while a client of it is attached here. */
interface Local {
  readonly claims: SessionClaims;
  readonly key: string;
  /** Whom the session counts against (Call.holder), for `maxSessionsPerCaller`. */
  readonly holder: string;
  clients: number;
  /** This replica is the session's owner (the log's `producer`): it reads the upstream's standalone stream. */
  owner: boolean;
  /** The session's claims with its upstream placement, once it initialized. */
  routed: SessionClaims | undefined;
  /** The upstream's standalone stream being read; `none` when the upstream has none. */
  pump: UpstreamResponse['body'] | 'starting' | 'none' | undefined;
  pumpRetryAt: number;
  /** The upstream's last event id on its standalone stream, where reading it resumes. */
  upstreamEventId: string;
  nextCheckAt: number;
  touchedAt: number;
  timer: NodeJS.Timeout | undefined;
}

const ACCEPT_BOTH = 'application/json, text/event-stream';
/** The owner named by a session nobody reads any more (no node id looks like it). */
const RELEASED = '~released';
const CHECK_EVERY_MS = 1_000;
const RECLAIM_MS = 5 * CHECK_EVERY_MS;

/**
 * legacy: the 2024-11-05 sessions this replica looks after while their clients read them here
 * (the HTTP+SSE door is src/http/legacy-sse.ts). The session stream lives in the event log; one
 * replica at a time, the session's owner, reads the upstream's standalone stream into it, and
 * ownership moves with the client: a replica whose client came back takes over from an owner that
 * left or died. When the last client leaves, the owner lets the session go; when nobody picked it
 * up, the session ends, upstream too. Per-caller caps count the sessions attached or being opened.
 */
export class LegacySessions {
  readonly #gw: GatewayContext;
  readonly #local = new Map<string, Local>();
  /** New sessions per holder between their check and their Local (see LegacyDoor.onSse). */
  readonly opening = new HolderCounts();

  constructor(gw: GatewayContext) {
    this.#gw = gw;
  }

  /** The sessions attached here, by id. */
  get local(): ReadonlyMap<string, Local> {
    return this.#local;
  }

  /** Sessions a holder has here: attached, or being opened. */
  sessionsOf(holder: string): number {
    let n = this.opening.of(holder);
    for (const local of this.#local.values()) if (local.holder === holder) n++;
    return n;
  }

  /** Shutdown: the sessions owned here are let go at once, for the replicas their clients resume on. */
  async close(): Promise<void> {
    const releases: Promise<unknown>[] = [];
    for (const local of this.#local.values()) {
      clearTimeout(local.timer);
      this.#stopPump(local);
      if (local.owner) releases.push(this.#gw.hub.log.claim(local.key, this.#gw.hub.opts.node, RELEASED).catch(() => false));
    }
    this.#local.clear();
    await Promise.all(releases);
  }

  /**
   * A client connection to the session stream: the session becomes known here (`resumed`: the
   * client came back with Last-Event-ID, so another replica may own it) until its last client leaves.
   */
  attach(res: ServerResponse, token: string, claims: SessionClaims, afterSeq: number, resumed: boolean, holder: string): void {
    let local = this.#local.get(claims.id);
    if (!local) {
      local = { claims, key: legacyKey(claims.id), holder, clients: 0, owner: !resumed, routed: undefined, pump: undefined, pumpRetryAt: 0, upstreamEventId: '', nextCheckAt: 0, touchedAt: Date.now(), timer: undefined };
      this.#local.set(claims.id, local);
    }
    const here = local;
    here.clients++;
    clearTimeout(here.timer);
    res.once('close', () => this.#leave(here));
    void tailSession(this.#gw.hub, res, {
      key: here.key,
      streamId: token,
      afterSeq,
      resumed,
      // Relative, so it resolves under any path prefix a proxy adds.
      prelude: `retry: ${this.#gw.config.events.retryMs}\nevent: endpoint\ndata: messages?sessionId=${token}\n\n`,
      tick: (events) => this.#tick(here, events, res),
    });
  }

  /** Looks after the session while a client reads it here: ownership, the standalone stream, the log's lifetime. */
  async #tick(local: Local, events: readonly LoggedEvent[], res: ServerResponse): Promise<void> {
    if (res.destroyed || res.writableEnded) return;
    for (const e of events) {
      if (e.end) return;
      if (e.upstreamId) local.upstreamEventId = e.upstreamId;
    }
    const now = Date.now();
    const log = this.#gw.hub.log;
    // An idle session must not expire from the log while its client still reads it.
    if (now - local.touchedAt > this.#gw.config.events.ttlMs / 3) {
      local.touchedAt = now;
      new SessionFeed(this.#gw.hub, local.key).mark();
    }
    if (!local.owner && now >= local.nextCheckAt) {
      local.nextCheckAt = now + CHECK_EVERY_MS;
      const info = await log.info(local.key);
      if (!info) return void res.end();
      if (res.destroyed) return;
      const node = this.#gw.hub.opts.node;
      // The owner left (released the session) or died: the replica its client is on now takes over.
      if (info.producer === node || ((info.producer === RELEASED || !(await log.alive(info.producer))) && (await log.claim(local.key, info.producer, node)))) local.owner = true;
    }
    if (local.owner && local.pump === undefined && now >= local.pumpRetryAt) {
      local.routed ??= await this.route(local.claims);
      if (local.routed) await this.#startPump(local, local.routed);
    }
  }

  async #startPump(local: Local, routed: SessionClaims): Promise<void> {
    local.pump = 'starting';
    const upstream = this.#gw.servers.get(routed.server)!;
    let res: UpstreamResponse;
    try {
      res = await upstream.get(routed, legacyRequest(routed.protocolVersion, [], false, GATEWAY_ORIGINATED), local.upstreamEventId || undefined);
    } catch (err) {
      if (err instanceof GatewayError && err.code === 'MCPGW_ERR_SESSION_NOT_FOUND') return this.end(local.claims, routed);
      local.pump = undefined;
      local.pumpRetryAt = Date.now() + CHECK_EVERY_MS;
      return;
    }
    if (local.pump !== 'starting') {
      // The session was let go meanwhile.
      if (res.body && typeof res.body !== 'string') discard(res.body);
      return;
    }
    if (res.status !== 200 || !isSse(res)) {
      if (res.body && typeof res.body !== 'string') discard(res.body);
      // 405: no standalone stream, every message comes with an answer. Else (409 while the
      // previous owner's stream is still open upstream) try again.
      local.pump = res.status === 405 ? 'none' : undefined;
      local.pumpRetryAt = Date.now() + CHECK_EVERY_MS;
      return;
    }
    const body = res.body;
    local.pump = body;
    const feed = new SessionFeed(this.#gw.hub, local.key);
    readSseEvents(
      body,
      (e) => {
        if (e.id) local.upstreamEventId = e.id;
        if (e.data) feed.push(e.data.replace(/\n/g, ''), e.id ?? '');
        else if (e.id) feed.mark(e.id);
      },
      () => {
        // Ended or broke: read it again (resuming at its last id) on the next check.
        if (local.pump !== body) return;
        local.pump = undefined;
        local.pumpRetryAt = Date.now() + CHECK_EVERY_MS;
      },
    );
  }

  #stopPump(local: Local): void {
    const pump = local.pump;
    local.pump = undefined;
    if (pump && typeof pump === 'object') pump.destroy();
  }

  /**
   * The last client here left. After `events.detachedGrace` the owner lets the session go (a
   * replica where the client came back takes it over); if nobody did after another grace
   * period (5 s at least), nobody reads the session any more and it ends.
   */
  #leave(local: Local): void {
    if (--local.clients > 0) return;
    const grace = this.#gw.config.events.detachedGraceMs;
    local.timer = setTimeout(() => {
      if (local.clients > 0) return;
      this.#stopPump(local);
      if (!local.owner) return void this.#local.delete(local.claims.id);
      local.owner = false;
      void this.#gw.hub.log.claim(local.key, this.#gw.hub.opts.node, RELEASED).catch(() => false);
      // Long enough for any replica its client reads from to notice (it checks every second).
      local.timer = setTimeout(() => {
        if (local.clients > 0) return;
        this.#local.delete(local.claims.id);
        void this.#gw.hub.log
          .info(local.key)
          .then(async (info) => {
            if (info?.producer === RELEASED) await this.end(local.claims, local.routed ?? (await this.route(local.claims)));
          })
          .catch(() => {});
      }, Math.max(grace, RECLAIM_MS));
      local.timer.unref();
    }, grace);
    local.timer.unref();
  }

  /** The session is over: its stream ends for every client, its upstream session is closed. */
  async end(claims: SessionClaims, routed: SessionClaims | undefined): Promise<void> {
    const local = this.#local.get(claims.id);
    if (local) {
      clearTimeout(local.timer);
      this.#stopPump(local);
      this.#local.delete(claims.id);
    }
    const feed = new SessionFeed(this.#gw.hub, legacyKey(claims.id));
    feed.end();
    await feed.flushed();
    const upstream = routed && this.#gw.servers.get(routed.server);
    await upstream?.delete(routed!, legacyRequest(routed!.protocolVersion, [], false, GATEWAY_ORIGINATED)).catch(() => undefined);
    await this.#gw.endSession(routed ?? claims);
  }

  /** The session's claims with its upstream placement; undefined until it initialized. */
  async route(claims: SessionClaims): Promise<SessionClaims | undefined> {
    const sealed = await this.#gw.legacyRoutes.get(claims.id);
    const routed = sealed ? this.#gw.sealer.open(sealed) : undefined;
    return routed && routed.id === claims.id ? routed : undefined;
  }
}

/** The log stream of a legacy session (one per session). */
export function legacyKey(session: string): string {
  return `${session}:legacy`;
}

/** What the upstream side needs of a legacy client's message; it sent no MCP headers of its own. */
export function legacyRequest(protocolVersion: string | undefined, messages: readonly Envelope[], batch: boolean, admission: Admission, signal?: AbortSignal): ClientRequest {
  const headers: Record<string, string> = { accept: ACCEPT_BOTH, 'content-type': 'application/json' };
  if (protocolVersion) headers['mcp-protocol-version'] = protocolVersion;
  return clientRequest(headers, messages, batch, protocolVersion ?? LEGACY_REVISION, admission, signal);
}
