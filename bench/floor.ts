/**
 * The floor: the least a Node.js HTTP hop can do per call. node:http in; out through an undici Pool
 * (the gateway's own client and pool settings) with `dispatch` and a handler that writes each
 * piece of the answer straight to the client's response: no promise, no body stream, no pipe. The
 * request body is read whole (as the gateway reads it: one write upstream), hop-by-hop headers are
 * dropped, nothing is parsed or checked. Whatever the gateway costs above this row is its own work.
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
  // The raw header list (name, value, name, value…): Node builds `req.headers` only when asked.
  const raw = req.rawHeaders;
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) headers.push(raw[i]!, raw[i + 1]!);
  pool.dispatch({ path, method: req.method as Dispatcher.HttpMethod, headers, body }, new Relay(res, req.method === 'GET'));
}

/** One upstream answer, written to the client's response as it comes. */
class Relay implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse;
  readonly #flushHeaders: boolean;
  #controller: Dispatcher.DispatchController | undefined;

  constructor(res: ServerResponse, flushHeaders: boolean) {
    this.#res = res;
    this.#flushHeaders = flushHeaders;
    // The client left: the upstream request goes too (an open GET stream would stay otherwise).
    res.once('close', () => {
      if (!res.writableFinished) this.#controller?.abort(new Error('client closed'));
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    const out: OutgoingHttpHeaders = {};
    for (const k in headers) if (!HOP_BY_HOP.has(k)) out[k] = headers[k];
    this.#res.writeHead(statusCode, out);
    // A standalone GET stream may say nothing for a long time: its headers go now. (Not for POST
    // answers, whose body follows at once: a separate header write would cost a syscall.)
    if (this.#flushHeaders) this.#res.flushHeaders();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#res.write(chunk)) return;
    // A slow client: the upstream waits (a rare path, so its closure is no per-call cost).
    controller.pause();
    this.#res.once('drain', () => controller.resume());
  }

  onResponseEnd(): void {
    this.#res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, _err: Error): void {
    if (!this.#res.headersSent) this.#res.writeHead(502).end();
    else this.#res.destroy();
  }
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
