import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SubscribeRequestSchema, UnsubscribeRequestSchema } from '@modelcontextprotocol/sdk/types.js';

/**
 * A session-era SDK upstream with resources/subscribe: resources demo://public and demo://secret;
 * `subscribed` records every URI it was asked to subscribe to.
 */
export async function startSubscribeUpstream() {
  const subscribed: string[] = [];
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const build = () => {
    const s = new McpServer({ name: 'sub-up', version: '1' }, { capabilities: { resources: { subscribe: true, listChanged: true } } });
    s.registerResource('public', 'demo://public', {}, async (u) => ({ contents: [{ uri: u.href, text: 'public text' }] }));
    s.registerResource('secret', 'demo://secret', {}, async (u) => ({ contents: [{ uri: u.href, text: 'secret text' }] }));
    s.server.setRequestHandler(SubscribeRequestSchema, async (req) => {
      subscribed.push(req.params.uri);
      setTimeout(() => void s.server.sendResourceUpdated({ uri: req.params.uri }).catch(() => {}), 150);
      return {};
    });
    s.server.setRequestHandler(UnsubscribeRequestSchema, async () => ({}));
    return s;
  };
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => void (async () => {
      const body = Buffer.concat(chunks).toString();
      const parsed = body ? JSON.parse(body) : undefined;
      const sid = req.headers['mcp-session-id'];
      const t = typeof sid === 'string' ? sessions.get(sid) : undefined;
      if (t) return t.handleRequest(req, res, parsed);
      if (sid) return void res.writeHead(404).end();
      const tr = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (id) => void sessions.set(id, tr) });
      await build().connect(tr);
      await tr.handleRequest(req, res, parsed);
    })().catch((e) => { if (!res.headersSent) res.writeHead(500).end(String(e)); }));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    subscribed,
    close: async () => { for (const t of sessions.values()) await t.close().catch(() => {}); http.closeAllConnections(); await new Promise<void>((r) => http.close(() => r())); },
  };
}
