import { PassThrough } from 'node:stream';
import { errorBody, GatewayError, type JsonRpcId } from '../errors.ts';
import { headerValue } from '../protocol/headers.ts';
import { wireLines, wireText } from '../protocol/wire.ts';
import { withTraceMeta } from './tracing.ts';
import { idKey } from '../protocol/jsonrpc.ts';
import { SSE_HEADERS, type ClientRequest, type UpstreamResponse } from './types.ts';

interface Pending {
  readonly id: JsonRpcId;
  readonly progressToken: unknown;
  readonly acceptsSse: boolean;
  readonly resolve: (res: UpstreamResponse) => void;
  /** The requests of one POST still unanswered: its stream ends with the last answer. */
  readonly open: { count: number };
  /** Set once the answer became an SSE stream. */
  stream: PassThrough | undefined;
}

/** Messages held for a standalone stream that is not open yet. */
const GET_QUEUE_MAX = 1_000;

/**
 * The messages of a request one by one, each on one line, for a channel that takes single
 * messages: stdio children and 2024-11-05 SSE servers read one message per line or POST (the SDK
 * drops a batch array). Written by the gateway from the checked messages (src/protocol/wire.ts),
 * so no line break of the caller's can cut a message in two or make two of one.
 */
export function singleMessages(req: ClientRequest, traceMeta?: Readonly<Record<string, string>>): string[] {
  // traces: the exchange's trace context goes in each message's _meta, the only channel there is.
  if (traceMeta) return withTraceMeta(req.messages, traceMeta).map((m) => wireText(m));
  // The body of one message is that message's line already.
  if (req.body !== undefined && req.messages.length === 1 && req.body[0] !== BATCH_OPEN) return [req.body.toString('utf8')];
  return wireLines(req.messages);
}

const BATCH_OPEN = 0x5b; // '['

/**
 * legacy: for an upstream that speaks in single messages on one channel — the 2024-11-05 SSE
 * transport — the gateway is the Streamable HTTP server: it answers each POST with the upstream's
 * response as JSON, or as an SSE stream when notifications or server→client requests about it
 * come first, and gives everything else to the standalone (GET) stream.
 */
export class MessageFramer {
  readonly #pending = new Map<string, Pending>();
  /** Pending requests by progress token, so progress finds its request without a scan. */
  readonly #byProgress = new Map<unknown, Pending>();
  #getStream: PassThrough | undefined;
  readonly #getQueue: string[] = [];
  lastActivity = Date.now();

  /** Nothing in flight and no stream open: the session may be reaped when idle. */
  get idle(): boolean {
    return this.#pending.size === 0 && !this.#getStream;
  }

  /** Registers the requests of `req`, sends it, and resolves with the first form of the answer. */
  request(req: ClientRequest, send: () => Promise<void>, failed: (err: unknown) => GatewayError): Promise<UpstreamResponse> {
    this.lastActivity = Date.now();
    const accept = headerValue(req.headers.accept);
    const requests = req.messages.filter((m) => m.kind === 'request');
    const acceptsSse = accept.includes('text/event-stream') || accept.includes('*/*') || requests.length > 1;
    return new Promise<UpstreamResponse>((resolve) => {
      let first: Pending | undefined;
      const open = { count: requests.length };
      for (const m of requests) {
        const meta = m.params?._meta as Record<string, unknown> | undefined;
        const p: Pending = { id: m.id, progressToken: meta?.progressToken, acceptsSse, resolve, open, stream: undefined };
        first ??= p;
        const key = idKey(m.id);
        // The same id again (the client reused one still in flight): the earlier one is answered first.
        const earlier = this.#pending.get(key);
        if (earlier) this.#settle(key, errorBody(new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a request with this id is already in flight'), m.id));
        this.#pending.set(key, p);
        if (p.progressToken !== undefined) this.#byProgress.set(p.progressToken, p);
      }
      // A batch is answered on one stream, opened at once.
      if (requests.length > 1 && first && this.#openStream(first)) for (const m of requests) this.#pending.get(idKey(m.id))!.stream = first.stream;
      send().catch((err: unknown) => {
        const e = failed(err);
        for (const m of requests) this.#settle(idKey(m.id), errorBody(e, m.id));
      });
    });
  }

  /** One message from the upstream (a JSON text). False when it is not JSON. */
  receive(text: string): boolean {
    let msg: { id?: unknown; method?: unknown; params?: { progressToken?: unknown } };
    try {
      msg = JSON.parse(text) as typeof msg;
    } catch {
      return false;
    }
    if (typeof msg !== 'object' || msg === null) return false;
    this.lastActivity = Date.now();
    if (msg.method === undefined && (typeof msg.id === 'string' || typeof msg.id === 'number') && this.#settle(idKey(msg.id), text)) return true;
    // A notification or a server→client request: the request it belongs to, else the GET stream.
    const target = this.#related(msg);
    if (target && this.#openStream(target)) target.stream!.write(sseEvent(text));
    else if (this.#getStream) this.#getStream.write(sseEvent(text));
    else if (this.#getQueue.length < GET_QUEUE_MAX) this.#getQueue.push(text);
    return true;
  }

  /** The standalone stream; 409 while one is open. */
  openGet(): UpstreamResponse {
    this.lastActivity = Date.now();
    if (this.#getStream) return { status: 409, headers: { 'content-type': 'application/json' }, body: CONFLICT };
    const stream = new PassThrough();
    this.#getStream = stream;
    stream.once('close', () => {
      if (this.#getStream === stream) this.#getStream = undefined;
      this.lastActivity = Date.now();
    });
    for (const text of this.#getQueue.splice(0)) stream.write(sseEvent(text));
    return { status: 200, headers: { ...SSE_HEADERS }, body: stream };
  }

  /** The upstream is gone: every pending request gets `error`, the standalone stream ends. */
  close(error: GatewayError): void {
    for (const key of [...this.#pending.keys()]) this.#settle(key, errorBody(error, this.#pending.get(key)!.id));
    this.#getStream?.end();
  }

  /** Delivers the answer to a pending request; false when none has that id. */
  #settle(key: string, text: string): boolean {
    const p = this.#pending.get(key);
    if (!p) return false;
    this.#pending.delete(key);
    if (p.progressToken !== undefined && this.#byProgress.get(p.progressToken) === p) this.#byProgress.delete(p.progressToken);
    p.open.count--;
    if (!p.stream) {
      p.resolve({ status: 200, headers: { 'content-type': 'application/json' }, body: text });
      return true;
    }
    p.stream.write(sseEvent(text));
    // The stream of a batch ends with its last answer.
    if (p.open.count === 0) p.stream.end();
    return true;
  }

  #related(msg: { method?: unknown; params?: { progressToken?: unknown } }): Pending | undefined {
    if (msg.method === 'notifications/progress' && msg.params?.progressToken !== undefined) return this.#byProgress.get(msg.params.progressToken);
    // The transport has no "related request" marker: with one request in flight the relation is
    // unambiguous; with none open, the latest request's stream reaches a client without a GET stream.
    if (this.#pending.size === 1) return this.#pending.values().next().value;
    return this.#getStream ? undefined : [...this.#pending.values()].at(-1);
  }

  /** Turns a pending answer into an SSE stream (once); false when the client accepts JSON only. */
  #openStream(p: Pending): boolean {
    if (p.stream) return true;
    if (!p.acceptsSse) return false;
    p.stream = new PassThrough();
    p.resolve({ status: 200, headers: { ...SSE_HEADERS }, body: p.stream });
    return true;
  }
}

/** The standalone stream is one per session, as the gateway's own front door has it (MCPGW_ERR_STREAM_CONFLICT). */
const CONFLICT = errorBody(new GatewayError('MCPGW_ERR_STREAM_CONFLICT'));

function sseEvent(data: string): string {
  return `event: message\ndata: ${data}\n\n`;
}

/** The holder's session with nothing in flight and no stream open that was used least recently. */
export function oldestIdle<S extends { readonly holder: string; readonly released?: boolean; readonly framer: { readonly idle: boolean; readonly lastActivity: number } }>(sessions: Iterable<S>, holder: string): S | undefined {
  let oldest: S | undefined;
  for (const s of sessions) {
    if (s.holder !== holder || s.released || !s.framer.idle) continue;
    if (!oldest || s.framer.lastActivity < oldest.framer.lastActivity) oldest = s;
  }
  return oldest;
}
