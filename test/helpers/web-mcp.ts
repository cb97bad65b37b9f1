import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { WebStandardStreamableHTTPServerTransport, type JSONRPCMessage, type Server } from '@modelcontextprotocol/server';
import { MemoryEventStore } from './reference-fixtures.ts';

/**
 * SDK v2 servers (`@modelcontextprotocol/server`, web-standard Request → Response) on node:http,
 * for the test servers built on it (era-server.ts, policy-upstream.ts).
 */

export interface WebMcp {
  handle(req: Request): Promise<Response>;
  close(): Promise<void>;
}

/** The session era: a resumable transport per Mcp-Session-Id, each with a server of its own from `build`. */
export function sessionHandler(build: () => Server): WebMcp {
  const sessions = new Map<string, WebStandardStreamableHTTPServerTransport>();
  return {
    async handle(req) {
      const sid = req.headers.get('mcp-session-id');
      if (sid) {
        const t = sessions.get(sid);
        return t ? t.handleRequest(req) : Response.json({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }, { status: 404 });
      }
      const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        eventStore: new MemoryEventStore<JSONRPCMessage>(),
        retryInterval: 200,
        onsessioninitialized: (id) => void sessions.set(id, transport),
        onsessionclosed: (id) => void sessions.delete(id),
      });
      await build().connect(transport);
      return transport.handleRequest(req);
    },
    close: async () => void (await Promise.allSettled([...sessions.values()].map((t) => t.close()))),
  };
}

export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** `req` (its body read) as a web Request, aborted when `res` closes before it is complete: the client went away (for 2026-07-28, a cancellation). */
export function toWeb(req: IncomingMessage, res: ServerResponse, body: Buffer): Request {
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers.set(k, v);
  const ac = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  return new Request(`http://127.0.0.1${req.url}`, { method: req.method, headers, body: req.method === 'POST' ? body : undefined, signal: ac.signal });
}

export function fromWeb(r: Response, res: ServerResponse): void {
  res.writeHead(r.status, Object.fromEntries(r.headers));
  if (!r.body) return void res.end();
  // An SSE stream may stay quiet for long: its headers go out now, not with the first event.
  res.flushHeaders();
  const body = Readable.fromWeb(r.body as NodeReadableStream);
  res.once('close', () => body.destroy());
  body.on('error', () => res.destroy());
  body.pipe(res);
}
