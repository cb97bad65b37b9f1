import { fileURLToPath } from 'node:url';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startListening, type Child } from './process.ts';
import { read, type RawResponse } from './raw.ts';

/** Revision 2026-07-28 in tests: the reference server of both eras, raw requests, SDK v2 clients. */

export const ERA_SERVER = fileURLToPath(new URL('./era-server.ts', import.meta.url));
export const V2026 = '2026-07-28';

export interface EraServer {
  readonly url: string;
  readonly child: Child;
  stop(): Promise<void>;
}

/** test/helpers/era-server.ts in its own process: `stateless` (2026-07-28 only) or `session`. */
export async function startEraServer(era: 'stateless' | 'session', replica: string = era): Promise<EraServer> {
  const { child, port } = await startListening(ERA_SERVER, ['--era', era], { ...process.env, ERA_REPLICA: replica });
  return { url: `http://127.0.0.1:${port}/mcp`, child, stop: () => child.kill('SIGTERM') };
}

export function meta(capabilities: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { 'io.modelcontextprotocol/protocolVersion': V2026, 'io.modelcontextprotocol/clientCapabilities': capabilities, 'io.modelcontextprotocol/clientInfo': { name: 'raw-2026', version: '1.0.0' }, ...extra };
}

/** The headers a conforming 2026-07-28 client sends for this request. */
export function statelessHeaders(method: string, params: Record<string, unknown> = {}): Record<string, string> {
  const h: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': V2026, 'mcp-method': method };
  const name = method === 'resources/read' ? params.uri : method === 'tools/call' || method === 'prompts/get' ? params.name : undefined;
  if (typeof name === 'string') h['mcp-name'] = name;
  return h;
}

/** One raw 2026-07-28 request: `_meta` added to params unless given, conforming headers unless overridden. */
export async function statelessPost(url: string, method: string, params: Record<string, unknown> = {}, opts: { headers?: Record<string, string>; id?: number | string; signal?: AbortSignal } = {}): Promise<RawResponse> {
  const p = '_meta' in params ? params : { ...params, _meta: meta() };
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...statelessHeaders(method, p), ...opts.headers },
    body: JSON.stringify({ jsonrpc: '2.0', id: opts.id ?? 1, method, params: p }),
    signal: opts.signal,
  });
  return read(res);
}

/** An SDK v2 client: pinned to 2026-07-28 (or `auto`), answering elicitation with `{ name }`, sampling and roots too. */
export async function connectV2(url: string, opts: { mode?: 'auto' | 'pin'; name?: string; headers?: Record<string, string> } = {}) {
  const client = new Client(
    { name: 'gateway-test-v2', version: '1.0.0' },
    { versionNegotiation: { mode: opts.mode === 'auto' ? 'auto' : { pin: V2026 } }, capabilities: { elicitation: { form: {} }, sampling: {}, roots: {} } },
  );
  client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { name: opts.name ?? 'Ada' } }));
  client.setRequestHandler('sampling/createMessage', async () => ({ role: 'assistant', content: { type: 'text', text: 'Paris' }, model: 'test', stopReason: 'endTurn' }));
  client.setRequestHandler('roots/list', async () => ({ roots: [{ uri: 'file:///work', name: 'work' }] }));
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: opts.headers ? { headers: opts.headers } : undefined }));
  return { client, close: () => client.close() };
}

/** The JSON-RPC messages of an SSE body. */
export function sseMessages(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(5).trim())
    .filter(Boolean)
    .map((d) => JSON.parse(d) as Record<string, unknown>);
}
