import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An upstream that has its clients poll (SEP-1699, 2025-11-25), written out by hand so a test
 * controls the `retry:`, how often a call's stream is ended before its answer, and whether a
 * resumption is accepted at all. Streamable HTTP on loopback, in this process.
 *
 * Tool `poll { closes }`: its answer stream gets a priming event (an id, the `retry:`) and is
 * ended; each resumption (GET + Last-Event-ID) is held open a moment and ended again until
 * `closes` streams were ended, then the answer comes on the open resumption (which, like the
 * SDK's, stays open). `closes: -1` never answers. Tool `now` answers at once, as JSON.
 */
export interface PollingUpstream {
  readonly url: string;
  /** Every resumption that arrived: the event id it named, and how long after the stream it resumes had ended. */
  readonly resumes: readonly { lastEventId: string; afterEndMs: number }[];
  /** SSE streams open now (a resumption that carried its answer stays open until the client lets go). */
  readonly openStreams: number;
  close(): Promise<void>;
}

export interface PollingOptions {
  /** The `retry:` of each priming event (none when undefined). */
  readonly retryMs?: number;
  /** Resumptions are answered with this status instead of a stream. */
  readonly refuse?: number;
  /** How long a resumption is held open before it is ended again (default 30 ms). */
  readonly holdMs?: number;
  /** A resumption held open sends a notifications/progress this often (none when undefined). */
  readonly progressMs?: number;
}

interface PolledCall {
  readonly id: unknown;
  remaining: number;
  endedAt: number;
  progress: number;
}

const TOOLS = [
  { name: 'poll', description: 'ends its stream `closes` times before it answers', inputSchema: { type: 'object', properties: { closes: { type: 'number' } } } },
  { name: 'now', description: 'answers at once', inputSchema: { type: 'object' } },
];

export async function startPollingUpstream(opts: PollingOptions = {}): Promise<PollingUpstream> {
  const sessions = new Set<string>();
  const calls = new Map<string, PolledCall>();
  const resumes: { lastEventId: string; afterEndMs: number }[] = [];
  const open = new Set<ServerResponse>();
  const hold = opts.holdMs ?? 30;
  const retry = opts.retryMs === undefined ? '' : `retry: ${opts.retryMs}\n`;

  const json = (res: ServerResponse, body: unknown, headers: Record<string, string> = {}) => void res.writeHead(200, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  const stream = (res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    open.add(res);
    res.once('close', () => open.delete(res));
  };
  const end = (res: ServerResponse, call: PolledCall) => {
    call.remaining--;
    call.endedAt = Date.now();
    res.end();
  };

  function handle(req: IncomingMessage, res: ServerResponse, text: string): void {
    const sid = req.headers['mcp-session-id'] as string | undefined;
    if (req.method === 'DELETE') {
      if (sid) sessions.delete(sid);
      return void res.writeHead(200).end();
    }
    if (req.method === 'GET') {
      if (!sid || !sessions.has(sid)) return void res.writeHead(404).end();
      const lastEventId = req.headers['last-event-id'] as string | undefined;
      // No standalone stream: every message comes with an answer.
      if (!lastEventId) return void res.writeHead(405, { allow: 'POST, DELETE' }).end();
      const key = lastEventId.slice(0, lastEventId.lastIndexOf('.'));
      const call = calls.get(key);
      if (!call) return void res.writeHead(404).end();
      resumes.push({ lastEventId, afterEndMs: Date.now() - call.endedAt });
      if (opts.refuse) return void res.writeHead(opts.refuse).end();
      stream(res);
      if (call.remaining !== 0) {
        const progress = opts.progressMs === undefined ? undefined : setInterval(() => res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: key, progress: ++call.progress } })}\n\n`), opts.progressMs);
        return void setTimeout(() => {
          clearInterval(progress);
          end(res, call);
        }, hold);
      }
      res.write(`id: ${key}.1\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: call.id, result: { content: [{ type: 'text', text: `polled ${resumes.filter((r) => r.lastEventId.startsWith(key)).length} times` }] } })}\n\n`);
      return;
    }
    const msg = JSON.parse(text) as { id?: unknown; method?: string; params?: { name?: string; arguments?: { closes?: number }; protocolVersion?: string } };
    if (msg.method === 'initialize') {
      const id = randomUUID();
      sessions.add(id);
      return json(res, { jsonrpc: '2.0', id: msg.id, result: { protocolVersion: msg.params?.protocolVersion ?? '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'polling', version: '1' } } }, { 'mcp-session-id': id });
    }
    if (!sid || !sessions.has(sid)) {
      // Not a 2026-07-28 server: server/discover and anything sessionless is refused.
      return void res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id ?? null, error: { code: -32600, message: 'Mcp-Session-Id required' } }));
    }
    if (msg.id === undefined) return void res.writeHead(202).end();
    if (msg.method === 'tools/list') return json(res, { jsonrpc: '2.0', id: msg.id, result: { tools: TOOLS } });
    if (msg.method === 'tools/call' && msg.params?.name === 'now') return json(res, { jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: 'now' }] } });
    if (msg.method === 'tools/call' && msg.params?.name === 'poll') {
      const key = randomUUID();
      const call: PolledCall = { id: msg.id, remaining: msg.params.arguments?.closes ?? 1, endedAt: 0, progress: 0 };
      calls.set(key, call);
      stream(res);
      res.write(`id: ${key}.0\n${retry}data: \n\n`);
      return void setTimeout(() => end(res, call), 10);
    }
    json(res, { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } });
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    resumes,
    get openStreams() {
      return open.size;
    },
    close: async () => {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
