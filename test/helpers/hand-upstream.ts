import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A hand-written Streamable HTTP upstream of one test file, listening on loopback in this process. */
export interface HandUpstream {
  /** Its MCP endpoint (`/mcp`). */
  readonly url: string;
  readonly server: Server;
  /** Ends every connection it has and stops listening. */
  close(): Promise<void>;
}

export async function listenUpstream(listener: RequestListener): Promise<HandUpstream> {
  const server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    server,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A request's whole body as text. */
export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
