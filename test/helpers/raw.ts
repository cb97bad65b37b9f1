/** Raw HTTP for protocol-level tests: exact headers and bodies, no SDK smoothing. */
export const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw-test', version: '1.0.0' } },
};

export const JSON_AND_SSE = 'application/json, text/event-stream';

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<RawResponse> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: JSON_AND_SSE, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return read(res);
}

export async function request(url: string, method: string, headers: Record<string, string> = {}, body?: string): Promise<RawResponse> {
  return read(await fetch(url, { method, headers, body }));
}

/** Status, headers and body (parsed when JSON) of a fetch Response. */
export async function read(res: Response): Promise<RawResponse> {
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** The headers of a request in session `sid`. */
export function sessionHeaders(sid: string, protocolVersion = '2025-11-25'): Record<string, string> {
  return { 'mcp-session-id': sid, 'mcp-protocol-version': protocolVersion };
}

/** Opens a session the way a client does (initialize + initialized); returns its id. */
export async function openSession(url: string, protocolVersion = '2025-11-25', headers: Record<string, string> = {}): Promise<string> {
  const init = await post(url, { ...INIT, params: { ...INIT.params, protocolVersion } }, headers);
  if (init.status !== 200) throw new Error(`initialize: ${init.status} ${init.text}`);
  const sid = init.headers.get('mcp-session-id');
  if (!sid) throw new Error('no Mcp-Session-Id');
  const note = await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' }, { ...headers, 'mcp-session-id': sid, 'mcp-protocol-version': protocolVersion });
  if (note.status !== 202) throw new Error(`initialized: ${note.status} ${note.text}`);
  return sid;
}

/** The JSON-RPC message of a JSON or single-event SSE response body. */
export function rpcOf(res: RawResponse): { id?: unknown; result?: unknown; error?: { code: number; message: string; data?: { code?: string } } } {
  if (res.json !== undefined) return res.json as ReturnType<typeof rpcOf>;
  const data = res.text
    .split('\n')
    .filter((l) => l.startsWith('data: '))
    .map((l) => l.slice(6))
    .filter((d) => d.trim())
    .at(-1);
  return JSON.parse(data ?? 'null') as ReturnType<typeof rpcOf>;
}
