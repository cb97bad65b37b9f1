import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

/** One request as the upstream received it. */
export interface Recorded {
  readonly method: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** Subject CN of the client certificate, when the upstream runs TLS and got one. */
  readonly clientCn: string | undefined;
}

export interface RecordingUpstream {
  readonly url: string;
  readonly requests: Recorded[];
  /** Tool names that really ran (a hidden tool must never show up here). */
  readonly ran: string[];
  close(): Promise<void>;
}

export interface RecordingOptions {
  /** Answer application/json instead of SSE. */
  json?: boolean;
  /** HTTPS with these PEMs; `ca` set → client certificates are required. */
  tls?: { cert: string; key: string; ca?: string };
  /** Refuse requests whose header does not pass (401), as an upstream with its own auth does. */
  requireHeader?: { name: string; check: (value: string | undefined) => boolean };
}

/**
 * An MCP server (official SDK, Streamable HTTP) in this process that records every request's
 * headers and body, so tests can assert what reached the upstream — and what never did.
 * Tools: echo, add, admin_reset, secret_report; resources: demo://public, demo://secret;
 * prompts: greet, admin_prompt.
 */
export async function startRecordingUpstream(opts: RecordingOptions = {}): Promise<RecordingUpstream> {
  const requests: Recorded[] = [];
  const ran: string[] = [];
  const sessions = new Map<string, StreamableHTTPServerTransport>();

  const build = () => {
    const server = new McpServer({ name: 'recording-upstream', version: '1.0.0' });
    const tool = (name: string, text: (args: Record<string, unknown>) => string) =>
      server.registerTool(name, { description: name, inputSchema: { text: z.string().optional(), password: z.string().optional(), nested: z.record(z.string(), z.unknown()).optional() } }, async (args) => {
        ran.push(name);
        return { content: [{ type: 'text', text: text(args) }] };
      });
    tool('echo', (a) => String(a.text ?? ''));
    tool('add', () => '3');
    tool('admin_reset', () => 'reset done');
    tool('secret_report', () => 'the secret report');
    server.registerResource('public', 'demo://public', { mimeType: 'text/plain' }, async (uri) => ({ contents: [{ uri: uri.href, text: 'public text' }] }));
    server.registerResource('secret', 'demo://secret', { mimeType: 'text/plain' }, async (uri) => ({ contents: [{ uri: uri.href, text: 'secret text' }] }));
    server.registerPrompt('greet', { argsSchema: { name: z.string() } }, ({ name }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `hi ${name}` } }] }));
    server.registerPrompt('admin_prompt', {}, () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'admin' } }] }));
    return server;
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const socket = req.socket as TLSSocket;
      const clientCn = socket.encrypted ? ((socket.getPeerCertificate()?.subject?.CN as string | undefined) ?? undefined) : undefined;
      requests.push({ method: req.method ?? '', headers: req.headers, body, clientCn });
      if (opts.requireHeader && !opts.requireHeader.check(req.headers[opts.requireHeader.name] as string | undefined)) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' }).end('{"error":"unauthorized"}');
        return;
      }
      void (async () => {
        const parsed = body ? (JSON.parse(body) as unknown) : undefined;
        const sid = req.headers['mcp-session-id'];
        const existing = typeof sid === 'string' ? sessions.get(sid) : undefined;
        if (existing) return existing.handleRequest(req, res, parsed);
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
        await transport.handleRequest(req, res, parsed);
      })().catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      });
    });
  };

  const server: Server = opts.tls
    ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key, ca: opts.tls.ca, requestCert: opts.tls.ca !== undefined, rejectUnauthorized: opts.tls.ca !== undefined }, handler)
    : createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}/mcp`,
    requests,
    ran,
    close: async () => {
      for (const t of sessions.values()) await t.close().catch(() => {});
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
