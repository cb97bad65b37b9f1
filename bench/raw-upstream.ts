/**
 * A deliberately thin MCP upstream on bare node:http: initialize, notifications, tools/call echo,
 * DELETE, nothing else, no validation. Its answers have the demo server's shape (one SSE event per
 * POST request), at a fraction of the SDK's CPU, so rows against it show the hop's own cost.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

interface Message {
  id?: string | number;
  method?: string;
  params?: { protocolVersion?: string; arguments?: { text?: unknown } };
}

const { values } = parseArgs({ options: { http: { type: 'string', default: '0' } } });

const server = createServer((req, res) => {
  if (req.method === 'DELETE') {
    res.writeHead(200).end();
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST, DELETE' }).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let msg: Message;
    try {
      msg = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Message;
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}');
      return;
    }
    if (msg.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    const headers: Record<string, string> = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
    let payload: string;
    if (msg.method === 'initialize') {
      headers['mcp-session-id'] = randomUUID();
      const result = { protocolVersion: msg.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'bench-raw', version: '1.0.0' } };
      payload = JSON.stringify({ result, jsonrpc: '2.0', id: msg.id });
    } else if (msg.method === 'tools/call') {
      const text = String(msg.params?.arguments?.text ?? '');
      payload = JSON.stringify({ result: { content: [{ type: 'text', text }] }, jsonrpc: '2.0', id: msg.id });
    } else {
      payload = JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } });
    }
    res.writeHead(200, headers).end(`event: message\ndata: ${payload}\n\n`);
  });
});

server.listen(Number(values.http), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ listening: (server.address() as AddressInfo).port }) + '\n');
});
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
