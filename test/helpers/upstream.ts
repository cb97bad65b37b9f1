import { fileURLToPath } from 'node:url';
import { spawnChild, waitForLine, type Child } from './process.ts';

export const DEMO_SERVER = fileURLToPath(new URL('../../src/demo/server.ts', import.meta.url));

export interface HttpUpstreamProcess {
  readonly url: string;
  readonly port: number;
  readonly child: Child;
  stop(): Promise<void>;
}

/**
 * The demo MCP server over Streamable HTTP in its own process, on a random loopback port;
 * `opts.transport: 'sse'` serves the 2024-11-05 HTTP+SSE transport instead (url: its `/sse`).
 */
export async function startDemoUpstream(replica: string, port = 0, opts: { transport?: 'http' | 'sse'; env?: Record<string, string> } = {}): Promise<HttpUpstreamProcess> {
  const mode = opts.transport === 'sse' ? '--sse' : '--http';
  const child = spawnChild(process.execPath, [DEMO_SERVER, mode, String(port)], { env: { ...process.env, ...opts.env, DEMO_REPLICA: replica } });
  const listening = await waitForLine(child, (l) => {
    try {
      const v = JSON.parse(l) as { listening?: number };
      return v.listening;
    } catch {
      return undefined;
    }
  });
  return { url: `http://127.0.0.1:${listening}/${mode === '--sse' ? 'sse' : 'mcp'}`, port: listening, child, stop: () => child.kill('SIGTERM') };
}
