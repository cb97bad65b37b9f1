import { randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordingSseUpstream {
  /** The SSE endpoint, as `transport: sse` upstreams are configured. */
  readonly url: string;
  /** Every POST body as it arrived. */
  readonly bodies: string[];
  /** Tool names that really ran. */
  readonly ran: string[];
  close(): Promise<void>;
}

/**
 * A 2024-11-05 HTTP+SSE MCP server written out by hand (no SDK), so a test sees every POST body
 * byte for byte. Tools: echo, secret_report.
 */
export async function startRecordingSseUpstream(): Promise<RecordingSseUpstream> {
  const bodies: string[] = [];
  const ran: string[] = [];
  const streams = new Map<string, ServerResponse>();
  const send = (sid: string, message: unknown) => streams.get(sid)?.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && url.pathname === '/sse') {
      const sid = randomUUID();
      streams.set(sid, res);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: endpoint\ndata: /messages?sessionId=${sid}\n\n`);
      res.once('close', () => streams.delete(sid));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/messages') {
      const sid = url.searchParams.get('sessionId') ?? '';
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        bodies.push(body);
        res.writeHead(202).end();
        let m: { id?: unknown; method?: string; params?: { name?: string; protocolVersion?: string; arguments?: unknown } };
        try {
          m = JSON.parse(body) as typeof m;
        } catch {
          return;
        }
        if (m.id === undefined || m.method === undefined) return;
        if (m.method === 'initialize') send(sid, { jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params?.protocolVersion ?? '2024-11-05', capabilities: { tools: {} }, serverInfo: { name: 'recording-sse', version: '1' } } });
        else if (m.method === 'tools/list') send(sid, { jsonrpc: '2.0', id: m.id, result: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }, { name: 'secret_report', inputSchema: { type: 'object' } }] } });
        else if (m.method === 'tools/call' && (m.params?.name === 'echo' || m.params?.name === 'secret_report')) {
          ran.push(m.params.name);
          send(sid, { jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: JSON.stringify(m.params.arguments ?? {}) }] } });
        } else if (m.method === 'ping') send(sid, { jsonrpc: '2.0', id: m.id, result: {} });
        else send(sid, { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: `unknown: ${m.method}` } });
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/sse`,
    bodies,
    ran,
    close: async () => {
      for (const s of streams.values()) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
