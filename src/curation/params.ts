import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { GATEWAY_ORIGINATED } from '../pipeline/admission.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { paramHeadersOf, writeParamHeaders, type ParamHeader } from '../protocol/param-headers.ts';
import { STATELESS_REVISION } from '../protocol/revisions.ts';
import { SseSplitter, sseMessage } from '../protocol/sse.ts';
import { standardHeaders } from '../protocol/stateless.ts';
import { discard } from '../upstream/body.ts';
import { forCaller, ownRequest, type ClientRequest, type UpstreamResponse } from '../upstream/types.ts';

/** Tools remembered per server: lists are paginated and bounded by the upstream, this bounds us. */
const MAX_TOOLS = 10_000;
/** The gateway's own look at the upstream's list: at most this many pages, this many bytes each. */
const MAX_PAGES = 20;
const MAX_PAGE_BYTES = 8 * 1024 * 1024;
/** A tool the upstream's list did not have is not looked for again before this. */
const LOOK_AGAIN_MS = 30_000;
const NONE: Readonly<Record<string, string>> = Object.freeze({});

/**
 * The `x-mcp-header` marks of a curated server's upstream tools, in the upstream's terms (the
 * published schema lacks the fixed arguments, and their marks), as this replica saw them in a
 * tools/list answer; and from them, the Mcp-Param-* headers of a call as the gateway sends it to
 * a 2026-07-28 upstream. Written from the arguments sent — after curation set its fixed ones and
 * defaults — never copied from the caller's headers, which speak of the caller's arguments.
 */
export class ParamMarks {
  /** Upstream tool name → its marks; null for a schema whose marks break the revision's rules. */
  readonly #byTool = new Map<string, readonly ParamHeader[] | null>();
  /** The gateway's own look at the list, under way (one at a time), and when the last one ended. */
  #looking: Promise<void> | undefined;
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
   * The Mcp-Param-* headers of `sent`, a tools/call as it goes upstream (`req`: the request it is
   * sent for); `changed`: curation set some of its arguments. Undefined when the caller's own
   * (well-formed) headers may go: the arguments are the caller's as sent, and the upstream checks
   * the headers against them. A tool whose marks are not known here yet when curation set
   * arguments of its call (its list was answered from the cache, or by another replica, or not
   * asked for) is looked up in the upstream's list first.
   */
  async headersFor(sent: Envelope, changed: boolean, req: ClientRequest, exchange: (req: ClientRequest) => Promise<UpstreamResponse>): Promise<Readonly<Record<string, string>> | undefined> {
    const tool = sent.params?.name;
    if (sent.method !== 'tools/call' || typeof tool !== 'string') return undefined;
    if (changed && !this.#byTool.has(tool)) await this.#look(sent, req, exchange);
    const marks = this.#byTool.get(tool);
    if (marks) return writeParamHeaders(marks, sent.params!.arguments);
    // Marks unknown, or invalid: a caller's header may be for an argument the gateway set, so
    // none goes. An upstream that wants one refuses the call (-32020).
    return changed ? NONE : undefined;
  }

  #look(sent: Envelope, req: ClientRequest, exchange: (req: ClientRequest) => Promise<UpstreamResponse>): Promise<void> {
    if (Date.now() - this.#lookedAt < LOOK_AGAIN_MS) return Promise.resolve();
    return (this.#looking ??= this.#pages(sent, req, exchange)
      .catch(() => {})
      .finally(() => {
        this.#looking = undefined;
        this.#lookedAt = Date.now();
      }));
  }

  /** The upstream's tools/list, page by page, asked on behalf of the caller of `req` with the envelope (`_meta`) of its call. */
  async #pages(sent: Envelope, req: ClientRequest, exchange: (req: ClientRequest) => Promise<UpstreamResponse>): Promise<void> {
    let cursor: unknown;
    for (let page = 0; page < MAX_PAGES; page++) {
      const id = `mcpgw-marks-${randomBytes(6).toString('base64url')}`;
      const params: Record<string, unknown> = { _meta: sent.params?._meta };
      if (typeof cursor === 'string') params.cursor = cursor;
      const list = ownRequest({ 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...standardHeaders('tools/list', params) }, { jsonrpc: '2.0', id, method: 'tools/list', params }, STATELESS_REVISION, GATEWAY_ORIGINATED);
      const result = await resultOf(await exchange(forCaller(list, req.headers, req.principal ?? '')), id);
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
  const pick = (msg: unknown) => {
    const m = msg as { id?: unknown; result?: unknown } | null;
    return m?.id === id && m.result !== null && typeof m.result === 'object' ? (m.result as Record<string, unknown>) : undefined;
  };
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
      splitter.push(chunk, (event) => (found ??= pick(sseMessage(event)?.msg)));
      if (found) return found;
    }
  } finally {
    discard(body);
  }
  return sse ? undefined : pick(parse(Buffer.concat(chunks).toString('utf8')));
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
