#!/usr/bin/env node
/**
 * The bundled demo upstream: a small MCP server written with the SDK. `npm start` spawns it over
 * stdio as server "demo"; `--http <port>` serves it over Streamable HTTP instead (tests, compose),
 * answering each POST with an SSE stream, or with `--json` too with one application/json body (the
 * SDK's `enableJsonResponse`: progress and other notifications of a request are then dropped).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport, type EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ElicitResultSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const REPLICA = process.env.DEMO_REPLICA ?? 'demo';
/** Calls of slow_count that ended because the client cancelled them (the `stats` tool). */
let cancelled = 0;

export function buildDemoServer(): McpServer {
  const server = new McpServer({ name: 'mcp-gateway-demo', version: '1.0.0' }, { capabilities: { logging: {} } });

  server.registerTool('echo', { description: 'Returns the text it is given', inputSchema: { text: z.string() }, annotations: { readOnlyHint: true } }, async ({ text }) => ({
    content: [{ type: 'text', text }],
  }));

  server.registerTool('add', { description: 'Adds two numbers', inputSchema: { a: z.number(), b: z.number() }, annotations: { readOnlyHint: true } }, async ({ a, b }) => ({
    content: [{ type: 'text', text: String(a + b) }],
    structuredContent: { sum: a + b },
    // structuredContent needs an output schema to be checked; keep it informative only.
  }));

  server.registerTool(
    'slow_count',
    {
      description: 'Counts to `count`, one progress notification per step, `delayMs` apart',
      inputSchema: { count: z.number().int().min(1).max(10_000), delayMs: z.number().int().min(0).max(60_000).default(100) },
    },
    async ({ count, delayMs }, extra) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= count; i++) {
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        if (extra.signal.aborted) {
          cancelled++;
          throw new Error('cancelled');
        }
        if (token !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: count, message: `step ${i}` } });
        }
      }
      return { content: [{ type: 'text', text: `counted to ${count}` }] };
    },
  );

  server.registerTool('ask_name', { description: 'Asks the user for a name (elicitation) and greets them', inputSchema: {} }, async (_args, extra) => {
    const answer = await extra.sendRequest(
      {
        method: 'elicitation/create',
        params: { mode: 'form', message: 'What is your name?', requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } },
      },
      ElicitResultSchema,
    );
    const name = answer.action === 'accept' ? String(answer.content?.name ?? '') : '';
    return { content: [{ type: 'text', text: answer.action === 'accept' ? `Hello, ${name}!` : `no name (${answer.action})` }] };
  });

  server.registerTool('whoami', { description: 'Names the upstream replica that answered', inputSchema: {}, annotations: { readOnlyHint: true } }, async () => ({
    content: [{ type: 'text', text: REPLICA }],
  }));

  server.registerTool('stats', { description: 'Counters of this upstream process', inputSchema: {}, annotations: { readOnlyHint: true } }, async () => ({
    content: [{ type: 'text', text: JSON.stringify({ cancelled }) }],
  }));

  server.registerTool(
    'announce',
    { description: 'Answers at once, then sends `text` as a log message outside any request (the GET stream)', inputSchema: { text: z.string() } },
    async ({ text }) => {
      setTimeout(() => void server.server.sendLoggingMessage({ level: 'info', logger: 'demo', data: text }).catch(() => {}), 50);
      return { content: [{ type: 'text', text: 'announced' }] };
    },
  );

  // compose: with DEMO_GROW=1, a tool that adds a tool, so the server sends notifications/tools/list_changed.
  if (process.env.DEMO_GROW) server.registerTool('grow', { description: 'Adds a tool named `name` (the tool list changes)', inputSchema: { name: z.string() } }, async ({ name }) => {
    server.registerTool(name, { description: 'Added by grow', inputSchema: {} }, async () => ({ content: [{ type: 'text', text: `${REPLICA}:${name}` }] }));
    return { content: [{ type: 'text', text: `added ${name}` }] };
  });

  // compose: extra tools by name (tests of virtual servers with long names); each names itself.
  for (const name of (process.env.DEMO_EXTRA_TOOLS ?? '').split(',').filter(Boolean)) {
    server.registerTool(name, { description: 'Answers with the replica and its own name', inputSchema: {} }, async () => ({
      content: [{ type: 'text', text: `${REPLICA}:${name}` }],
    }));
  }

  server.registerResource('readme', 'demo://readme', { title: 'Demo README', mimeType: 'text/markdown' }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/markdown', text: '# mcp-gateway demo\nThis resource is served by the demo upstream.\n' }],
  }));

  server.registerPrompt('greet', { description: 'A greeting prompt', argsSchema: { name: z.string() } }, ({ name }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `Please greet ${name} warmly.` } }],
  }));

  return server;
}

/**
 * Keeps every event of the session's streams so a client (the gateway) can resume a stream with
 * Last-Event-ID: the upstream half of the gateway's two-level resumption.
 */
class MemoryEventStore implements EventStore {
  readonly #events: { id: string; stream: string; message: JSONRPCMessage }[] = [];
  #next = 0;

  async storeEvent(stream: string, message: JSONRPCMessage): Promise<string> {
    const id = `${stream}_${++this.#next}`;
    this.#events.push({ id, stream, message });
    if (this.#events.length > 10_000) this.#events.shift();
    return id;
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return this.#events.find((e) => e.id === eventId)?.stream ?? (eventId.includes('_') ? eventId.slice(0, eventId.lastIndexOf('_')) : undefined);
  }

  async replayEventsAfter(lastEventId: string, { send }: { send: (id: string, message: JSONRPCMessage) => Promise<void> }): Promise<string> {
    const stream = await this.getStreamIdForEventId(lastEventId);
    if (!stream) throw new Error(`unknown event id ${lastEventId}`);
    const at = this.#events.findIndex((e) => e.id === lastEventId);
    for (const e of this.#events.slice(at + 1)) if (e.stream === stream) await send(e.id, e.message);
    return stream;
  }
}

async function serveHttp(port: number, host: string, json: boolean): Promise<void> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const sid = req.headers['mcp-session-id'];
      const existing = typeof sid === 'string' ? sessions.get(sid) : undefined;
      if (existing) return existing.handleRequest(req, res);
      if (sid !== undefined) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
        return;
      }
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: json,
        eventStore: new MemoryEventStore(),
        onsessioninitialized: (id) => void sessions.set(id, transport),
        onsessionclosed: (id) => void sessions.delete(id),
      });
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(transport.sessionId);
      };
      await buildDemoServer().connect(transport);
      await transport.handleRequest(req, res);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => http.listen(port, host, resolve));
  process.stdout.write(JSON.stringify({ listening: (http.address() as AddressInfo).port }) + '\n');
  const stop = () => http.close(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/**
 * legacy: the demo over the 2024-11-05 HTTP+SSE transport (`--sse <port>`): `GET /sse` opens a
 * session, whose `endpoint` event names `/messages?sessionId=…`.
 */
async function serveLegacySse(port: number, host: string): Promise<void> {
  const sessions = new Map<string, SSEServerTransport>();
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (req.method === 'GET' && url.pathname === '/sse') {
        const transport = new SSEServerTransport('/messages', res);
        sessions.set(transport.sessionId, transport);
        res.once('close', () => sessions.delete(transport.sessionId));
        await buildDemoServer().connect(transport);
        return;
      }
      const transport = req.method === 'POST' && url.pathname === '/messages' ? sessions.get(url.searchParams.get('sessionId') ?? '') : undefined;
      if (transport) return transport.handlePostMessage(req, res);
      res.writeHead(404).end('Not found');
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => http.listen(port, host, resolve));
  process.stdout.write(JSON.stringify({ listening: (http.address() as AddressInfo).port }) + '\n');
  const stop = () => {
    http.closeAllConnections();
    http.close(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

const args = process.argv.slice(2);
const httpAt = args.indexOf('--http');
const sseAt = args.indexOf('--sse');
if (httpAt >= 0) {
  await serveHttp(Number(args[httpAt + 1] ?? 0), process.env.DEMO_HOST ?? '127.0.0.1', args.includes('--json'));
} else if (sseAt >= 0) {
  await serveLegacySse(Number(args[sseAt + 1] ?? 0), process.env.DEMO_HOST ?? '127.0.0.1');
} else {
  const transport = new StdioServerTransport();
  await buildDemoServer().connect(transport);
  // Exit with the parent: stdin closing means the gateway is gone.
  process.stdin.once('end', () => process.exit(0));
  process.stdin.once('close', () => process.exit(0));
}
