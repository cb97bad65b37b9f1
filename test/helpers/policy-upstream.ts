import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpHandler, ProtocolError, ProtocolErrorCode, Server, type CallToolResult } from '@modelcontextprotocol/server';
import { fromWeb, readBody, sessionHandler, toWeb, type WebMcp } from './web-mcp.ts';

/**
 * An MCP server (SDK v2, `@modelcontextprotocol/server`) in this process for policy tests, served
 * in either protocol era — `session` (Streamable HTTP with Mcp-Session-Id) or `stateless`
 * (2026-07-28 only) — with the same tools and resources, so one table can run every front door
 * against it. It counts what it really did and fails at the HTTP level on cue.
 *
 * Tools: `lookup` (readOnlyHint), `limited`, `note` (neither hint: changes state), `fails`
 * (answers `isError: true`), `secret` (for a policy to hide), `silent` (sends nothing for `ms`,
 * 20 s by default), `ticking` (a progress notification every 200 ms for `ms` when the caller sent
 * a progressToken). Any other tool name is a JSON-RPC error -32602. Resources: any `res://` URI
 * reads as `<uri> rev <n>`, n counting the reads of it; results carry public caching hints.
 */
export interface PolicyUpstream {
  readonly url: string;
  readonly era: 'session' | 'stateless';
  /** HTTP requests that arrived, by key: `tools/call <name>`, `resources/read <uri>`, `tools/list`, `notifications/cancelled`. */
  attempts(key: string): number;
  /** Work really done, by the same keys: tools run, resources read, lists answered. */
  done(key: string): number;
  /** Calls of a tool that ended because the caller cancelled them (notifications/cancelled, or their request closed). */
  cancelled(tool: string): number;
  /** The next `count` requests of `key` are answered `status` (503 by default) without being done. */
  fail(key: string, count: number, status?: number): void;
  close(): Promise<void>;
}

const TOOLS = [
  { name: 'lookup', annotations: { readOnlyHint: true } },
  { name: 'limited', annotations: { readOnlyHint: true } },
  { name: 'note', annotations: { readOnlyHint: false, idempotentHint: false } },
  { name: 'fails', annotations: { readOnlyHint: true } },
  { name: 'secret', annotations: { readOnlyHint: true } },
  { name: 'silent', annotations: { readOnlyHint: true } },
  { name: 'ticking', annotations: { readOnlyHint: true } },
].map((t) => ({ ...t, description: t.name, inputSchema: { type: 'object' as const, properties: { ms: { type: 'number' } } } }));

const HINT = { ttlMs: 60_000, cacheScope: 'public' } as const;
const text = (t: string): CallToolResult => ({ content: [{ type: 'text', text: t }] });

export async function startPolicyUpstream(era: 'session' | 'stateless'): Promise<PolicyUpstream> {
  const attempts = new Map<string, number>();
  const done = new Map<string, number>();
  const cancelled = new Map<string, number>();
  const faults: { key: string; count: number; status: number }[] = [];
  const bump = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1).get(key)!;
  // close() ends the calls still waiting, so no timer outlives the server.
  const closing = new AbortController();

  /** Waits `ms` (sending progress every 200 ms when `tick` is given) or until cancelled; true when cancelled. */
  const wait = async (ms: number, callSignal: AbortSignal, tick?: (n: number) => Promise<void>): Promise<boolean> => {
    const signal = AbortSignal.any([callSignal, closing.signal]);
    const until = Date.now() + ms;
    for (let n = 1; Date.now() < until; n++) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, tick ? 200 : until - Date.now());
        signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
      if (signal.aborted) return true;
      if (tick) await tick(n).catch(() => {});
    }
    return false;
  };

  const build = () => {
    const server = new Server(
      { name: `policy-upstream-${era}`, version: '1.0.0' },
      { capabilities: { tools: {}, resources: {} }, cacheHints: { 'tools/list': HINT, 'resources/list': HINT, 'resources/read': HINT } },
    );
    server.setRequestHandler('tools/list', () => (bump(done, 'tools/list'), { tools: TOOLS }));
    server.setRequestHandler('resources/list', () => ({ resources: [{ uri: 'res://doc', name: 'doc', mimeType: 'text/plain' }] }));
    server.setRequestHandler('resources/read', (req) => {
      const { uri } = req.params;
      if (!uri.startsWith('res://')) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Resource ${uri} not found`);
      return { contents: [{ uri, mimeType: 'text/plain', text: `${uri} rev ${bump(done, `resources/read ${uri}`)}` }] };
    });
    server.setRequestHandler('tools/call', async (req, ctx) => {
      const { name } = req.params;
      const ms = Number(req.params.arguments?.ms ?? 20_000);
      const stopped = () => (bump(cancelled, name), text('cancelled'));
      switch (name) {
        case 'silent':
          if (await wait(ms, ctx.mcpReq.signal)) return stopped();
          break;
        case 'ticking': {
          const token = ctx.mcpReq._meta?.progressToken;
          const tick = async (n: number) => {
            if (token !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress: n } });
          };
          if (await wait(ms, ctx.mcpReq.signal, tick)) return stopped();
          break;
        }
        default:
          if (!TOOLS.some((t) => t.name === name)) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Tool ${name} not found`);
      }
      bump(done, `tools/call ${name}`);
      if (name === 'fails') return { isError: true, content: [{ type: 'text', text: 'the tool failed' }] };
      return text(`${name} done`);
    });
    return server;
  };

  let web: WebMcp;
  if (era === 'stateless') {
    const handler = createMcpHandler(build, { legacy: 'reject' });
    web = { handle: (req) => handler.fetch(req), close: () => handler.close() };
  } else {
    web = sessionHandler(build);
  }

  /** The request's key (see `attempts`), counted; an answer when a fault is due. */
  const arrive = (body: Buffer): number | undefined => {
    let msg: { method?: unknown; params?: { name?: unknown; uri?: unknown } };
    try {
      msg = JSON.parse(body.toString('utf8')) as typeof msg;
    } catch {
      return undefined;
    }
    if (typeof msg?.method !== 'string') return undefined;
    const target = msg.method === 'tools/call' ? msg.params?.name : msg.method === 'resources/read' ? msg.params?.uri : undefined;
    const key = typeof target === 'string' ? `${msg.method} ${target}` : msg.method;
    bump(attempts, key);
    const fault = faults.find((f) => f.key === key && f.count > 0);
    if (!fault) return undefined;
    fault.count--;
    return fault.status;
  };

  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const body = await readBody(req);
      const failWith = req.method === 'POST' ? arrive(body) : undefined;
      if (failWith !== undefined) return void res.writeHead(failWith, { 'content-type': 'text/plain' }).end('overloaded');
      fromWeb(await web.handle(toWeb(req, res, body)), res);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    era,
    attempts: (key) => attempts.get(key) ?? 0,
    done: (key) => done.get(key) ?? 0,
    cancelled: (tool) => cancelled.get(tool) ?? 0,
    fail: (key, count, status = 503) => void faults.push({ key, count, status }),
    close: async () => {
      closing.abort();
      await web.close().catch(() => {});
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
