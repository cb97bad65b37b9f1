import { fileURLToPath } from 'node:url';
import { spawnChild, waitForLine, type Child } from './process.ts';

export const DEMO_SERVER = fileURLToPath(new URL('../../src/demo/server.ts', import.meta.url));

export interface HttpUpstreamProcess {
  readonly url: string;
  readonly port: number;
  readonly child: Child;
  stop(): Promise<void>;
}

/** The demo MCP server over Streamable HTTP in its own process, on a random loopback port. */
export async function startDemoUpstream(replica: string, port = 0): Promise<HttpUpstreamProcess> {
  const child = spawnChild(process.execPath, [DEMO_SERVER, '--http', String(port)], { env: { ...process.env, DEMO_REPLICA: replica } });
  const listening = await waitForLine(child, (l) => {
    try {
      const v = JSON.parse(l) as { listening?: number };
      return v.listening;
    } catch {
      return undefined;
    }
  });
  return { url: `http://127.0.0.1:${listening}/mcp`, port: listening, child, stop: () => child.kill('SIGTERM') };
}
