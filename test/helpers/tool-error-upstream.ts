import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';

export interface ToolErrorUpstream {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * An MCP server (official SDK, low-level `Server`, Streamable HTTP) in this process whose tools
 * fail in the two ways MCP has, inside HTTP 200s: `ok` succeeds, `fail` answers a result with
 * `isError: true`, `slow` answers after `ms` milliseconds, and any other tool name is a JSON-RPC
 * error -32602 (as the SDK's own servers answer an unknown tool). A known tool called with a
 * progressToken sends one progress notification first. `json`: answers as application/json
 * instead of SSE streams.
 */
export async function startToolErrorUpstream(opts: { json?: boolean } = {}): Promise<ToolErrorUpstream> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const build = () => {
    const server = new Server({ name: 'tool-error-upstream', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: ['ok', 'fail', 'slow'].map((name) => ({ name, inputSchema: { type: 'object' as const } })),
    }));
    server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
      const token = req.params._meta?.progressToken;
      const known = ['ok', 'fail', 'slow'].includes(req.params.name);
      // A progress notification first (when asked for one) makes the answer a stream.
      if (known && token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: 0, total: 1 } });
      switch (req.params.name) {
        case 'ok':
          return { content: [{ type: 'text', text: 'fine' }] };
        case 'fail':
          return { content: [{ type: 'text', text: 'the tool failed' }], isError: true };
        case 'slow': {
          const ms = Number(req.params.arguments?.ms ?? 1_000);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, ms);
            extra.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
          });
          return { content: [{ type: 'text', text: `slept ${ms} ms` }] };
        }
        default:
          throw new McpError(ErrorCode.InvalidParams, `Tool ${req.params.name} not found`);
      }
    });
    return server;
  };

  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const sid = req.headers['mcp-session-id'];
      const existing = typeof sid === 'string' ? sessions.get(sid) : undefined;
      if (existing) return existing.handleRequest(req, res);
      if (sid !== undefined) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}');
        return;
      }
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: opts.json ?? false,
        onsessioninitialized: (id) => void sessions.set(id, transport),
        onsessionclosed: (id) => void sessions.delete(id),
      });
      await build().connect(transport);
      await transport.handleRequest(req, res);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    close: async () => {
      for (const t of sessions.values()) await t.close().catch(() => {});
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
