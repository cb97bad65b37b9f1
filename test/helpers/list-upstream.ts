import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const VERSION = '2025-11-25';
/** `admin_reset` is the tool a policy or curation hides in the tests that use this server. */
const TOOLS = [
  { name: 'echo', inputSchema: { type: 'object' } },
  { name: 'admin_reset', inputSchema: { type: 'object' } },
];

export interface ListUpstream {
  readonly url: string;
  /** GETs that resumed a list answer (Last-Event-ID `list-1`). */
  readonly resumed: number;
  close(): Promise<void>;
}

/**
 * A hand-written Streamable HTTP server whose `tools/list` answer needs resuming: the POST stream
 * sends one log notification (event `list-1`), then either drops (`drop`) or stalls (`stall`);
 * the list itself comes on the GET that resumes after `list-1`.
 */
export async function startListUpstream(mode: 'drop' | 'stall'): Promise<ListUpstream> {
  let resumed = 0;
  const listIds = new Map<string, unknown>();
  const held = new Set<ServerResponse>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const sid = String(req.headers['mcp-session-id'] ?? '');
    if (req.method === 'GET') {
      if (req.headers['last-event-id'] !== 'list-1' || !listIds.has(sid)) return void res.writeHead(405, { allow: 'POST, DELETE' }).end();
      resumed++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`id: list-2\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: listIds.get(sid), result: { tools: TOOLS } })}\n\n`);
      return;
    }
    if (req.method === 'DELETE') return void res.writeHead(200).end();
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const m = JSON.parse(body) as { id?: unknown; method?: string; params?: { protocolVersion?: string } };
      if (m.method === 'initialize') {
        const result = { protocolVersion: m.params?.protocolVersion ?? VERSION, capabilities: { tools: {} }, serverInfo: { name: 'lists', version: '1.0.0' } };
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': `up-${Math.random().toString(36).slice(2)}` }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result }));
        return;
      }
      if (m.id === undefined) return void res.writeHead(202).end();
      if (m.method !== 'tools/list') return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: {} }));
      listIds.set(sid, m.id);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`id: list-1\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'listing' } })}\n\n`);
      if (mode === 'drop') setTimeout(() => res.socket?.destroy(), 50);
      else held.add(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    get resumed() {
      return resumed;
    },
    async close() {
      for (const r of held) r.socket?.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
