import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { GatewayError, isCallersOwn, type JsonRpcId } from '../errors.ts';
import { GATEWAY_ORIGINATED } from '../pipeline/admission.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { hasUnwrittenParam, MAX_PARAM_HEADER_LENGTH, MAX_PARAM_HEADERS, paramHeadersOf, writeParamHeaders, type ParamHeader } from '../protocol/param-headers.ts';
import { STATELESS_REVISION } from '../protocol/revisions.ts';
import { SseSplitter, sseMessage } from '../protocol/sse.ts';
import { decodeHeaderValue, standardHeaders } from '../protocol/stateless.ts';
import { discard } from './body.ts';
import { captureResult, parse, resultFor } from './capture.ts';
import { forCaller, ownRequest, type ClientRequest, type UpstreamResponse } from './types.ts';

/** Tools remembered per server: lists are paginated and bounded by the upstream, this bounds us. */
const MAX_TOOLS = 10_000;
/** A list page is read for its marks up to this size (a larger one passes, unread). */
const MAX_PAGE_BYTES = 8 * 1024 * 1024;
/** The gateway's own look at the upstream's list: at most this many pages. */
const MAX_PAGES = 20;
/** A tool the upstream's list did not have is not looked for again before this. */
const LOOK_AGAIN_MS = 30_000;
const NONE: Readonly<Record<string, string>> = Object.freeze({});

type Send = (req: ClientRequest) => Promise<UpstreamResponse>;

/**
 * The `x-mcp-header` marks of a 2026-07-28 upstream's tools, in its own terms, as this replica saw
 * them in its tools/list answers; and from them, the Mcp-Param-* headers of a tools/call as the
 * gateway sends it — written from the arguments sent, as Mcp-Method and Mcp-Name are written from
 * the message. A caller's header for a marked argument is never passed on (it may say something
 * else than the body); one no known mark names passes when the arguments are the caller's.
 */
export class ParamMarks {
  /** Upstream tool name → its marks; null for a schema whose marks break the revision's rules. */
  readonly #byTool = new Map<string, readonly ParamHeader[] | null>();
  /** The gateway's own look at the list, under way (one at a time), and when the last one ended. */
  #looking: Promise<boolean> | undefined;
  #lookedAt = 0;

  /** Learns from one page of the upstream's tools/list (its items as the upstream sent them). */
  learn(items: readonly unknown[]): void {
    for (const item of items) {
      const t = item as { name?: unknown; inputSchema?: unknown } | null;
      if (typeof t?.name !== 'string') continue;
      if (this.#byTool.size >= MAX_TOOLS && !this.#byTool.has(t.name)) this.#byTool.clear();
      this.#byTool.set(t.name, paramHeadersOf(t.inputSchema) ?? null);
    }
  }

  /**
   * The upstream refused this tools/call, sent with the Mcp-Param-* headers `sent`, as malformed
   * (400: in revision 2026-07-28 an Mcp-Param-* header that does not match the body, -32020): the
   * marks known here may be older than the tool's, so they are forgotten, and the next call goes
   * as for a tool not seen yet — unless the call had a marked argument no header could carry, or
   * a header of the caller's own: that refusal may be the caller's, and forgetting would leave
   * every caller's calls of the tool without headers until the list is read again (at most every 30 s).
   */
  refused(call: Envelope, sent: Readonly<Record<string, string>>): void {
    const tool = call.params?.name;
    if (typeof tool !== 'string') return;
    const marks = this.#byTool.get(tool);
    if (marks) {
      const args = call.params?.arguments;
      const written = writeParamHeaders(marks, args);
      if (hasUnwrittenParam(marks, args) || Object.keys(sent).some((name) => written[name] !== sent[name])) return;
    }
    this.#byTool.delete(tool);
  }

  /** The upstream's answer to the tools/list `id`, read for its marks as it passes (byte for byte). */
  watch(res: UpstreamResponse, id: JsonRpcId): UpstreamResponse {
    return captureResult(res, id, MAX_PAGE_BYTES, (result) => Array.isArray(result?.tools) && this.learn(result.tools as unknown[]));
  }

  /**
   * The Mcp-Param-* headers (lower-case names) of `req` as it goes upstream. For a tools/call
   * whose tool's marks are known: those written from its arguments, plus — when the arguments
   * are the caller's as sent — the caller's well-formed headers no mark names. Marks unknown (or
   * invalid): the caller's well-formed headers, or none when the gateway wrote arguments
   * (`req.argumentsWritten`: a session-era client translated, curation's fixed ones and
   * defaults); there the upstream's list is asked for first, on behalf of the same caller.
   */
  async headersFor(req: ClientRequest, send: Send): Promise<Readonly<Record<string, string>>> {
    const m = req.messages.length === 1 ? req.messages[0]! : undefined;
    const callers = req.argumentsWritten ? NONE : callerParamHeaders(req.headers);
    const tool = m?.method === 'tools/call' ? m.params?.name : undefined;
    if (typeof tool !== 'string') return callers;
    if (req.argumentsWritten && !this.#byTool.has(tool)) await this.#look(m!, req, send);
    const marks = this.#byTool.get(tool);
    if (!marks) return callers;
    if (callers === NONE) return writeParamHeaders(marks, m!.params!.arguments);
    const out: Record<string, string> = {};
    const marked = new Set(marks.map((mark) => `mcp-param-${mark.name.toLowerCase()}`));
    const written = writeParamHeaders(marks, m!.params!.arguments);
    let n = Object.keys(written).length;
    for (const [name, value] of Object.entries(callers)) if (!marked.has(name) && ++n <= MAX_PARAM_HEADERS) out[name] = value;
    return Object.assign(out, written);
  }

  async #look(sent: Envelope, req: ClientRequest, send: Send, again = true): Promise<void> {
    if (Date.now() - this.#lookedAt < LOOK_AGAIN_MS) return;
    const mine = this.#looking === undefined;
    const told = await (this.#looking ??= this.#pages(sent, req, send)
      .then(
        () => true,
        // A caller whose token could not be exchanged, or whom the upstream turned away, learnt
        // nothing of the list for anyone: the next caller may look.
        (err: unknown) => !isCallersOwn(err),
      )
      .then((counted) => {
        if (counted) this.#lookedAt = Date.now();
        return counted;
      })
      .finally(() => (this.#looking = undefined)));
    // Another caller's look, refused for them, is no answer for this one: it looks for itself.
    if (!told && !mine && again) return this.#look(sent, req, send, false);
  }

  /** The upstream's tools/list, page by page, asked on behalf of the caller of `req` with the envelope (`_meta`) of its call. */
  async #pages(sent: Envelope, req: ClientRequest, send: Send): Promise<void> {
    let cursor: unknown;
    for (let page = 0; page < MAX_PAGES; page++) {
      const id = `mcpgw-marks-${randomBytes(6).toString('base64url')}`;
      const params: Record<string, unknown> = { _meta: sent.params?._meta };
      if (typeof cursor === 'string') params.cursor = cursor;
      const list = ownRequest({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...standardHeaders('tools/list', params) }, { jsonrpc: '2.0', id, method: 'tools/list', params }, STATELESS_REVISION, GATEWAY_ORIGINATED);
      const res = await send(forCaller(list, req.headers, req.principal ?? ''));
      if (res.status === 403) {
        if (res.body !== null && typeof res.body !== 'string') discard(res.body);
        throw new GatewayError('MCPGW_ERR_FORBIDDEN', 'the upstream turned the caller away (HTTP 403)');
      }
      const result = await resultOf(res, id);
      if (!result || !Array.isArray(result.tools)) return;
      this.learn(result.tools);
      cursor = result.nextCursor;
      if (typeof cursor !== 'string' || cursor === '') return;
    }
  }
}

/** The result of the response with this id in an upstream's answer (JSON or SSE), read up to MAX_PAGE_BYTES. */
async function resultOf(res: UpstreamResponse, id: string): Promise<Record<string, unknown> | undefined> {
  if (res.body === null) return undefined;
  const sse = res.headers['content-type']?.startsWith('text/event-stream') === true;
  const pick = (msg: unknown) => resultFor(msg, id);
  if (typeof res.body === 'string') return pick(parse(res.body));
  const body: Readable = res.body;
  const splitter = new SseSplitter();
  const chunks: Buffer[] = [];
  let size = 0;
  let found: Record<string, unknown> | undefined;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_PAGE_BYTES) return undefined;
      if (!sse) {
        chunks.push(chunk);
        continue;
      }
      // Not waiting for the stream's end: the answer is all that is wanted of it.
      splitter.push(chunk, (event) => (found ??= pick(sseMessage(event)?.msg)));
      if (found) return found;
    }
  } finally {
    discard(body);
  }
  return sse ? undefined : pick(parse(Buffer.concat(chunks).toString('utf8')));
}

/** The caller's Mcp-Param-* headers that are well-formed (the revision's encoding, bounded). */
export function callerParamHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  let n = 0;
  for (const name in headers) {
    if (!name.startsWith('mcp-param-')) continue;
    const value = headers[name];
    if (typeof value !== 'string' || value.length > MAX_PARAM_HEADER_LENGTH || decodeHeaderValue(value) === undefined) continue;
    if (++n > MAX_PARAM_HEADERS) break;
    out[name] = value;
  }
  return out;
}
