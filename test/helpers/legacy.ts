import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

export const LEGACY_REVISION = '2024-11-05';

/**
 * An old client: the SDK's 2024-11-05 HTTP+SSE transport (`SSEClientTransport`), whose
 * `initialize` asks for 2024-11-05 as such clients did. Answers elicitation with `{ name }`.
 */
export async function connectLegacyClient(sseUrl: string, opts: { name?: string; headers?: Record<string, string>; fetch?: typeof fetch } = {}) {
  const client = new Client({ name: 'legacy-test', version: '1.0.0' }, { capabilities: { elicitation: { form: {} } } });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { name: opts.name ?? 'Ada' } }));
  const transport = new SSEClientTransport(new URL(sseUrl), {
    requestInit: opts.headers ? { headers: opts.headers } : undefined,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  const send = transport.send.bind(transport);
  transport.send = (message: JSONRPCMessage) => {
    const m = message as { method?: string; params?: Record<string, unknown> };
    if (m.method === 'initialize') m.params = { ...m.params, protocolVersion: LEGACY_REVISION };
    return send(message);
  };
  await client.connect(transport);
  return { client, transport, close: () => client.close() };
}

export interface LegacyEvent {
  id: string | undefined;
  event: string | undefined;
  data: string;
  message: { id?: unknown; method?: string; params?: { progress?: number; progressToken?: unknown }; result?: unknown; error?: { code: number; data?: { code?: string } } } | undefined;
}

/** A raw 2024-11-05 SSE stream: every event kept, read on demand, dropped like a lost network. */
export class LegacyStream {
  readonly status: number;
  readonly events: LegacyEvent[] = [];
  readonly #abort: AbortController;
  #wake: (() => void) | undefined;
  #ended = false;

  private constructor(res: Response, abort: AbortController) {
    this.status = res.status;
    this.#abort = abort;
    if (!res.body) return;
    const parser = createParser({
      onEvent: (m: EventSourceMessage) => {
        let message: LegacyEvent['message'];
        try {
          message = m.event === 'endpoint' ? undefined : (JSON.parse(m.data) as LegacyEvent['message']);
        } catch {
          message = undefined;
        }
        this.events.push({ id: m.id, event: m.event, data: m.data, message });
        this.#wake?.();
      },
    });
    void (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
      } catch {
        // dropped
      }
      this.#ended = true;
      this.#wake?.();
    })();
  }

  static async open(url: string, headers: Record<string, string> = {}): Promise<LegacyStream> {
    const abort = new AbortController();
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
    return new LegacyStream(res, abort);
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The message URL of the `endpoint` event, resolved against the stream's URL. */
  endpoint(base: string): string {
    const e = this.events.find((x) => x.event === 'endpoint');
    if (!e) throw new Error('no endpoint event');
    return new URL(e.data, base).href;
  }

  /** Waits until `done` holds for the events so far (or the stream ends, or the time is up). */
  async until(done: (events: LegacyEvent[]) => boolean, timeoutMs = 10_000): Promise<LegacyEvent[]> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.events)) {
      if (this.#ended || Date.now() > deadline) throw new Error(`stream ${this.#ended ? 'ended' : 'timed out'} after ${this.events.length} events`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    return this.events;
  }

  drop(): void {
    this.#abort.abort();
  }
}

/** POSTs one message to a legacy message URL. */
export async function postMessage(endpoint: string, message: unknown, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const res = await fetch(endpoint, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(message) });
  return { status: res.status, text: await res.text() };
}

/** initialize (2024-11-05) + initialized over a raw legacy stream; resolves once the answer came. */
export async function initializeLegacy(stream: LegacyStream, endpoint: string, headers: Record<string, string> = {}): Promise<void> {
  const init = { jsonrpc: '2.0', id: 'init', method: 'initialize', params: { protocolVersion: LEGACY_REVISION, capabilities: {}, clientInfo: { name: 'raw-legacy', version: '1' } } };
  const res = await postMessage(endpoint, init, headers);
  if (res.status !== 202) throw new Error(`initialize: ${res.status} ${res.text}`);
  await stream.until((events) => events.some((e) => e.message?.id === 'init'));
  await postMessage(endpoint, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers);
}
