import { Pool } from 'undici';

export const PROTOCOL_VERSION = '2025-11-25';

/**
 * Just enough of an MCP Streamable HTTP client to drive load: raw requests on a keep-alive undici
 * Pool, prebuilt headers, no SDK (its per-call validation would load the shared CPUs and make
 * every row look alike).
 */
export class McpHttpClient {
  readonly #pool: Pool;
  readonly #path: string;

  constructor(url: string, connections: number) {
    const u = new URL(url);
    this.#path = u.pathname + u.search;
    this.#pool = new Pool(u.origin, { connections, pipelining: 1, keepAliveTimeout: 30_000, bodyTimeout: 30_000, headersTimeout: 30_000 });
  }

  /** initialize + notifications/initialized: a session ready for calls. */
  async open(clientName = 'mcp-gateway-bench'): Promise<McpSession> {
    const headers = baseHeaders('');
    const init = JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: clientName, version: '1.0.0' } },
    });
    const res = await this.#pool.request({ path: this.#path, method: 'POST', headers, body: init });
    const text = await res.body.text();
    const sid = res.headers['mcp-session-id'];
    if (res.statusCode !== 200 || typeof sid !== 'string' || !text.includes('"result"')) {
      throw new Error(`initialize failed: HTTP ${res.statusCode} ${text.slice(0, 200)}`);
    }
    const session = new McpSession(this.#pool, this.#path, sid);
    await session.notify('notifications/initialized');
    return session;
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

export class McpSession {
  readonly id: string;
  readonly #pool: Pool;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  #nextId = 1;

  constructor(pool: Pool, path: string, id: string) {
    this.#pool = pool;
    this.#path = path;
    this.id = id;
    this.#headers = baseHeaders(id);
  }

  /**
   * A request whose params are already JSON (`paramsJson`, or built from the request id), so the
   * hot loop builds one string. Resolves with the whole response body (an SSE stream or a JSON
   * document, as the server chose).
   */
  async request(method: string, paramsJson: string | ((id: number) => string)): Promise<{ status: number; body: string }> {
    const id = this.#nextId++;
    const body = `{"jsonrpc":"2.0","id":${id},"method":"${method}","params":${typeof paramsJson === 'string' ? paramsJson : paramsJson(id)}}`;
    const res = await this.#pool.request({ path: this.#path, method: 'POST', headers: this.#headers, body });
    return { status: res.statusCode, body: await res.body.text() };
  }

  async notify(method: string): Promise<void> {
    const res = await this.#pool.request({ path: this.#path, method: 'POST', headers: this.#headers, body: `{"jsonrpc":"2.0","method":"${method}"}` });
    await res.body.dump();
    if (res.statusCode !== 202) throw new Error(`${method} answered HTTP ${res.statusCode}`);
  }

  /** DELETE: ends the session on the server; resolves with the HTTP status. */
  async delete(): Promise<number> {
    const { 'content-type': _, ...headers } = this.#headers;
    const res = await this.#pool.request({ path: this.#path, method: 'DELETE', headers });
    await res.body.dump();
    return res.statusCode;
  }

  /** DELETE as cleanup: errors ignored. */
  async end(): Promise<void> {
    try {
      await this.delete();
    } catch {
      // The server may already be gone.
    }
  }
}

function baseHeaders(sessionId: string): Record<string, string> {
  const h: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': PROTOCOL_VERSION,
  };
  if (sessionId) h['mcp-session-id'] = sessionId;
  return h;
}
