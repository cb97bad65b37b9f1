/**
 * An MCP server (official SDK) over stdio whose tool `meta` answers with the `params._meta` its
 * call arrived with: what a stdio upstream sees of the trace context (SEP-414).
 */
import { fileURLToPath } from 'node:url';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

export const META_UPSTREAM = fileURLToPath(import.meta.url);

if (process.argv[1] === META_UPSTREAM) {
  const server = new McpServer({ name: 'meta-upstream', version: '1.0.0' });
  server.registerTool('meta', { description: 'Returns the _meta of this call' }, async (extra) => ({ content: [{ type: 'text', text: JSON.stringify(extra._meta ?? {}) }] }));
  await server.connect(new StdioServerTransport());
}
