import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

/** A real SDK client over Streamable HTTP; answers elicitation with `{ name }`. */
export async function connectClient(url: string, opts: { name?: string; protocolVersion?: string; headers?: Record<string, string> } = {}) {
  const client = new Client({ name: 'gateway-test', version: '1.0.0' }, { capabilities: { elicitation: { form: {} } } });
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { name: opts.name ?? 'Ada' } }));
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: opts.headers ? { headers: opts.headers } : undefined });
  await client.connect(transport);
  return { client, transport, close: () => client.close() };
}

export function textOf(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}
