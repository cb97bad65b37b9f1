/**
 * The floor: the least a Node HTTP proxy can do per call. node:http in, an undici Pool out (the
 * gateway's own client and pool settings), the request body read whole (as the gateway reads it:
 * one write upstream) and the response streamed back, hop-by-hop headers dropped, nothing parsed or
 * checked. Whatever the gateway costs above this row is the gateway's own work.
 */
import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Pool, type Dispatcher } from 'undici';

const { values } = parseArgs({ options: { upstream: { type: 'string' }, port: { type: 'string', default: '0' }, connections: { type: 'string', default: '0' } } });
if (!values.upstream) throw new Error('--upstream URL is required');

const target = new URL(values.upstream);
const path = target.pathname + target.search;
// --connections 0 (the default): unlimited, like the gateway's default.
const pool = new Pool(target.origin, { connections: Number(values.connections) || null, pipelining: 1, keepAliveTimeout: 30_000, connectTimeout: 5_000, bodyTimeout: 0 });
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => forward(req, res, chunks.length === 0 ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
});

function forward(req: IncomingMessage, res: ServerResponse, body: Buffer | undefined): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
  const method = req.method as Dispatcher.HttpMethod;
  pool.request({ path, method, headers, body }).then(
    (up) => {
      const out: OutgoingHttpHeaders = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
      res.writeHead(up.statusCode, out);
      // A standalone GET stream may say nothing for a long time: its headers go now. (Not for
      // POST answers, whose body follows at once: a separate header write would cost a syscall.)
      if (method === 'GET') res.flushHeaders();
      // pipe, not stream.pipeline: pipeline builds an AbortController and aborts it on every
      // finish, and the DOMException that makes cost 10% of this process's CPU.
      up.body.once('error', () => res.destroy());
      res.once('close', () => {
        if (!up.body.readableEnded) up.body.destroy();
      });
      up.body.pipe(res);
    },
    () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    },
  );
}

server.listen({ port: Number(values.port), host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write(JSON.stringify({ listening: (server.address() as AddressInfo).port }) + '\n');
});
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  void pool.close();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
