/**
 * A deliberately thin MCP upstream on bare node:http: initialize, notifications, tools/call
 * (`echo`, and `slow_count` with one progress event per step, `delayMs` apart), a standalone GET
 * stream that stays open and idle, DELETE, nothing else, no validation. Its answers have the demo
 * server's shape (SSE events, one write each), at a fraction of the SDK's CPU, so rows against it
 * show the hop's own cost.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

interface Message {
  id?: string | number;
  method?: string;
  params?: { protocolVersion?: string; name?: string; arguments?: { text?: unknown; count?: unknown; delayMs?: unknown }; _meta?: { progressToken?: string | number } };
}

const { values } = parseArgs({ options: { http: { type: 'string', default: '0' } } });
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } as const;
/** Open standalone GET streams, ended when the process stops. */
const idle = new Set<ServerResponse>();

const server = createServer((req, res) => {
  if (req.method === 'DELETE') {
    res.writeHead(200).end();
    return;
  }
  if (req.method === 'GET') {
    // The standalone stream: headers now, then nothing (an idle session).
    res.writeHead(200, SSE_HEADERS);
    res.flushHeaders();
    idle.add(res);
    res.once('close', () => idle.delete(res));
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'GET, POST, DELETE' }).end();
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
    const headers: Record<string, string> = { ...SSE_HEADERS };
    let payload: string;
    if (msg.method === 'initialize') {
      headers['mcp-session-id'] = randomUUID();
      const result = { protocolVersion: msg.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'bench-raw', version: '1.0.0' } };
      payload = JSON.stringify({ result, jsonrpc: '2.0', id: msg.id });
    } else if (msg.method === 'tools/call' && msg.params?.name === 'slow_count') {
      slowCount(res, msg.id, msg.params);
      return;
    } else if (msg.method === 'tools/call') {
      const text = String(msg.params?.arguments?.text ?? '');
      payload = JSON.stringify({ result: { content: [{ type: 'text', text }] }, jsonrpc: '2.0', id: msg.id });
    } else {
      payload = JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } });
    }
    res.writeHead(200, headers).end(`event: message\ndata: ${payload}\n\n`);
  });
});

/** One write per event, as the SDK's transport does; with `delayMs`, each after a timer. */
function slowCount(res: ServerResponse, id: string | number, params: NonNullable<Message['params']>): void {
  const count = Math.max(1, Math.min(10_000, Number(params.arguments?.count) || 1));
  const delayMs = Math.max(0, Number(params.arguments?.delayMs) || 0);
  const token = params._meta?.progressToken;
  res.writeHead(200, SSE_HEADERS);
  let i = 0;
  const step = () => {
    while (++i <= count) {
      if (token !== undefined) {
        const progress = { progressToken: token, progress: i, total: count, message: `step ${i}` };
        res.write(`event: message\ndata: ${JSON.stringify({ method: 'notifications/progress', params: progress, jsonrpc: '2.0' })}\n\n`);
      }
      if (delayMs > 0 && i < count) return void setTimeout(step, delayMs);
    }
    const payload = JSON.stringify({ result: { content: [{ type: 'text', text: `counted to ${count}` }] }, jsonrpc: '2.0', id });
    res.end(`event: message\ndata: ${payload}\n\n`);
  };
  if (delayMs > 0) setTimeout(step, delayMs);
  else step();
}

server.listen({ port: Number(values.http), host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write(JSON.stringify({ listening: (server.address() as AddressInfo).port }) + '\n');
});
const stop = () => {
  for (const res of idle) res.destroy();
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
