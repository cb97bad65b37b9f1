import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small MCP server over Streamable HTTP, written out by hand so a test controls every byte:
 * it fails at the HTTP level on cue, counts what it really did, and pushes notifications on
 * its sessions' GET streams. Loopback, in this process.
 *
 * Tools: `lookup` (readOnlyHint), `put` (idempotentHint), `charge` (neither: must never run
 * twice for one call), `slow` (answers after `delayMs`). Resources: `res://doc`, `res://short`
 * (ttlMs 100), `res://mine` (cacheScope private); their text counts the reads (`rev N`).
 */
export interface ScriptedUpstream {
  readonly url: string;
  /** HTTP requests that arrived, by key (`initialize`, `resources/read res://doc`, `tools/call charge`, `tools/list`, `notifications/cancelled`). */
  attempts(key: string): number;
  /** Work really done, by the same keys: tools run, resources read, lists answered. */
  done(key: string): number;
  /** The next `count` requests matching `key` fail: `status` answers 503 without doing anything,
   * `reset` drops the connection without doing anything, `after` does the work and then drops it. */
  fail(key: string, count: number, mode: 'status' | 'reset' | 'after'): void;
  /** Sends a notification on every open GET stream; resolves with how many got it. */
  notify(method: string, params?: Record<string, unknown>): number;
  readonly openStreams: number;
  close(): Promise<void>;
}

export interface ScriptedOptions {
  /** Answer requests as a one-event SSE stream instead of JSON. */
  readonly sse?: boolean;
  /** Time resources/read takes (concurrency tests). */
  readonly readDelayMs?: number;
  /** The `instructions` of its initialize answer. */
  readonly instructions?: string;
}

const TOOLS = [
  { name: 'lookup', description: 'reads', inputSchema: { type: 'object' }, annotations: { readOnlyHint: true } },
  { name: 'put', description: 'idempotent write', inputSchema: { type: 'object' }, annotations: { idempotentHint: true } },
  { name: 'charge', description: 'not idempotent', inputSchema: { type: 'object' } },
  { name: 'slow', description: 'answers after delayMs', inputSchema: { type: 'object', properties: { delayMs: { type: 'number' } } } },
];
const RESOURCES: Record<string, Record<string, unknown>> = {
  'res://doc': {},
  'res://short': { ttlMs: 100 },
  'res://mine': { cacheScope: 'private' },
};

export async function startScriptedUpstream(opts: ScriptedOptions = {}): Promise<ScriptedUpstream> {
  const attempts = new Map<string, number>();
  const done = new Map<string, number>();
  const faults: { key: string; count: number; mode: 'status' | 'reset' | 'after' }[] = [];
  const sessions = new Map<string, Set<ServerResponse>>();
  const bump = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1).get(key)!;

  const answer = (res: ServerResponse, id: unknown, result: unknown, headers: Record<string, string> = {}) => {
    const body = JSON.stringify({ jsonrpc: '2.0', id, result });
    if (opts.sse) res.writeHead(200, { 'content-type': 'text/event-stream', ...headers }).end(`event: message\ndata: ${body}\n\n`);
    else res.writeHead(200, { 'content-type': 'application/json', ...headers }).end(body);
  };

  async function handle(req: IncomingMessage, res: ServerResponse, text: string): Promise<void> {
    const sid = req.headers['mcp-session-id'] as string | undefined;
    if (req.method === 'GET') {
      const streams = sid ? sessions.get(sid) : undefined;
      if (!streams) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(': open\n\n');
      streams.add(res);
      res.once('close', () => streams.delete(res));
      return;
    }
    if (req.method === 'DELETE') {
      if (sid) sessions.delete(sid);
      return void res.writeHead(200).end();
    }
    const msg = JSON.parse(text) as { id?: unknown; method?: string; params?: Record<string, unknown> };
    if (msg.method === 'initialize') {
      bump(attempts, 'initialize');
      const id = randomUUID();
      sessions.set(id, new Set());
      const caps = { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true }, prompts: { listChanged: true } };
      return answer(res, msg.id, { protocolVersion: msg.params?.protocolVersion ?? '2025-11-25', capabilities: caps, serverInfo: { name: 'scripted', version: '1' }, ...(opts.instructions ? { instructions: opts.instructions } : {}) }, { 'mcp-session-id': id });
    }
    if (!sid || !sessions.has(sid)) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}');
    if (msg.id === undefined) {
      bump(attempts, String(msg.method));
      return void res.writeHead(202).end();
    }

    const target = msg.method === 'tools/call' ? String(msg.params?.name) : msg.method === 'resources/read' ? String(msg.params?.uri) : '';
    const key = target ? `${msg.method} ${target}` : String(msg.method);
    bump(attempts, key);
    const fault = faults.find((f) => f.key === key && f.count > 0);
    if (fault) fault.count--;
    if (fault?.mode === 'status') return void res.writeHead(503, { 'content-type': 'text/plain' }).end('overloaded');
    if (fault?.mode === 'reset') return void req.socket.destroy();

    let result: unknown;
    switch (msg.method) {
      case 'tools/list':
        result = { tools: TOOLS };
        break;
      case 'resources/list':
        result = { resources: Object.keys(RESOURCES).map((uri) => ({ uri, name: uri })) };
        break;
      case 'resources/templates/list':
        result = { resourceTemplates: [] };
        break;
      case 'prompts/list':
        result = { prompts: [] };
        break;
      case 'resources/subscribe':
      case 'ping':
        result = {};
        break;
      case 'resources/read': {
        if (opts.readDelayMs) await new Promise((r) => setTimeout(r, opts.readDelayMs));
        const extra = RESOURCES[target] ?? {};
        result = { contents: [{ uri: target, mimeType: 'text/plain', text: `${target} rev ${(done.get(key) ?? 0) + 1}` }], ...extra };
        break;
      }
      case 'tools/call': {
        if (!TOOLS.some((t) => t.name === target)) {
          return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32602, message: `Tool ${target} not found` } }));
        }
        if (target === 'slow') await new Promise((r) => setTimeout(r, Number((msg.params?.arguments as { delayMs?: number } | undefined)?.delayMs ?? 1000)));
        result = { content: [{ type: 'text', text: `${target} done` }] };
        break;
      }
      default:
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } }));
    }
    bump(done, key);
    if (fault?.mode === 'after') return void req.socket.destroy();
    answer(res, msg.id, result);
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    attempts: (key) => attempts.get(key) ?? 0,
    done: (key) => done.get(key) ?? 0,
    fail: (key, count, mode) => void faults.push({ key, count, mode }),
    notify(method, params) {
      let n = 0;
      for (const streams of sessions.values()) {
        for (const s of streams) {
          s.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method, ...(params ? { params } : {}) })}\n\n`);
          n++;
        }
      }
      return n;
    },
    get openStreams() {
      let n = 0;
      for (const streams of sessions.values()) n += streams.size;
      return n;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
