/**
 * A `tools/call`'s tool and its own limits (`servers.<name>.tools.<tool>`, by published name):
 * what the limit, deadline and retry stages look up for a request.
 */
import type { ServerConfig, ToolLimits } from '../config/types.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';

/** The tool a `tools/call` names; undefined for anything else. */
export function toolName(m: Envelope): string | undefined {
  const name = m.method === 'tools/call' ? m.params?.name : undefined;
  return typeof name === 'string' ? name : undefined;
}

/** The limits of the tool `m` calls, when the server sets its own; undefined → the server's. */
export function toolLimits(server: ServerConfig, m: Envelope): ToolLimits | undefined {
  const tool = toolName(m);
  return tool !== undefined && Object.hasOwn(server.tools, tool) ? server.tools[tool] : undefined;
}
