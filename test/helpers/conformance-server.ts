#!/usr/bin/env node
/**
 * Our reference MCP server for the official conformance suite (`@modelcontextprotocol/conformance`,
 * server mode). The suite names the tools, resources and prompts it expects; this file implements
 * them with the SDK's low-level `Server`, so every schema it advertises is exactly what we wrote.
 *
 * Streamable HTTP on 127.0.0.1 (port from `--port`, default random), stateful sessions, one
 * in-memory event log per session for resumability, Host/Origin checks against DNS rebinding.
 * Prints `{"listening":<port>}` on stdout once ready; SIGTERM closes every session and exits.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  isInitializeRequest,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  LoggingLevelSchema,
  McpError,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type CallToolResult,
  type ElicitRequest,
  type GetPromptResult,
  type JSONRPCMessage,
  type LoggingLevel,
  type ReadResourceResult,
  type ServerNotification,
  type ServerRequest,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { DEFAULTS_FORM, ENUMS_FORM, MemoryEventStore, onePixelPng, rpcError, serveMcp, toneWav } from './reference-fixtures.ts';

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

// ---------------------------------------------------------------------------------------------
// Media the tools and prompts return (built in reference-fixtures.ts).

const RED_PIXEL = onePixelPng(255, 0, 0);
const BLUE_PIXEL = onePixelPng(0, 0, 255);
const TONE = toneWav(50);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const text = (t: string): CallToolResult => ({ content: [{ type: 'text', text: t }] });

// ---------------------------------------------------------------------------------------------
// Tools: each declares its arguments once, as a zod object; the advertised inputSchema is derived
// from it, and the same object validates the call. The JSON Schema 2020-12 tool is the exception:
// its whole point is a hand-written schema advertised verbatim.

interface ToolContext {
  readonly extra: Extra;
  readonly server: Server;
  readonly session: SessionState;
}

interface Tool {
  readonly name: string;
  readonly description: string;
  readonly inputSchema: Record<string, unknown>;
  call(args: Record<string, unknown>, ctx: ToolContext): Promise<CallToolResult>;
}

function tool<S extends z.ZodObject>(name: string, description: string, args: S, run: (a: z.output<S>, ctx: ToolContext) => Promise<CallToolResult>): Tool {
  const inputSchema = z.toJSONSchema(args, { io: 'input' }) as Record<string, unknown>;
  return {
    name,
    description,
    inputSchema,
    call: (raw, ctx) => {
      const parsed = args.safeParse(raw);
      if (!parsed.success) return Promise.resolve({ isError: true, content: [{ type: 'text', text: `Invalid arguments for ${name}: ${z.prettifyError(parsed.error)}` }] });
      return run(parsed.data, ctx);
    },
  };
}

const NO_ARGS = z.object({});

/** Asks the client to fill a form; a client without the elicitation capability gets a tool error. */
async function elicit(ctx: ToolContext, params: ElicitRequest['params']): Promise<CallToolResult> {
  if (!ctx.server.getClientCapabilities()?.elicitation) return { isError: true, content: [{ type: 'text', text: 'The client does not support elicitation' }] };
  const answer = await ctx.extra.sendRequest({ method: 'elicitation/create', params }, ElicitResultSchema);
  return text(`Elicitation completed: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);
}

const TOOLS: readonly Tool[] = [
  tool('test_simple_text', 'Returns one fixed text block', NO_ARGS, async () => text('This is a simple text response for testing.')),

  tool('test_image_content', 'Returns a 1x1 red PNG', NO_ARGS, async () => ({ content: [{ type: 'image', data: RED_PIXEL, mimeType: 'image/png' }] })),

  tool('test_audio_content', 'Returns a 50 ms WAV tone', NO_ARGS, async () => ({ content: [{ type: 'audio', data: TONE, mimeType: 'audio/wav' }] })),

  tool('test_embedded_resource', 'Returns an embedded text resource', NO_ARGS, async () => ({
    content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }],
  })),

  tool('test_multiple_content_types', 'Returns text, an image and an embedded resource', NO_ARGS, async () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: BLUE_PIXEL, mimeType: 'image/png' },
      { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) } },
    ],
  })),

  tool('test_tool_with_logging', 'Sends three info log messages, 50 ms apart, while it runs', NO_ARGS, async (_a, ctx) => {
    const steps = ['Tool execution started', 'Tool processing data', 'Tool execution completed'];
    for (const [i, data] of steps.entries()) {
      if (i > 0) await sleep(50);
      await ctx.session.log(ctx.extra, 'info', data);
    }
    return text('Logging tool finished after 3 messages');
  }),

  tool('test_error_handling', 'Always fails, reporting the failure as a tool result', NO_ARGS, async () => ({
    isError: true,
    content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }],
  })),

  tool('test_tool_with_progress', 'Reports progress 0, 50 and 100 of 100, 50 ms apart', NO_ARGS, async (_a, ctx) => {
    const token = ctx.extra._meta?.progressToken;
    for (const [i, progress] of [0, 50, 100].entries()) {
      if (i > 0) await sleep(50);
      if (token !== undefined) await ctx.extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, total: 100 } });
    }
    return text('Progress tool finished');
  }),

  tool('test_sampling', 'Asks the client LLM to answer a prompt (sampling)', z.object({ prompt: z.string().describe('The prompt to send to the LLM') }), async ({ prompt }, ctx) => {
    if (!ctx.server.getClientCapabilities()?.sampling) return { isError: true, content: [{ type: 'text', text: 'The client does not support sampling' }] };
    const answer = await ctx.extra.sendRequest(
      { method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 } },
      CreateMessageResultSchema,
    );
    const reply = answer.content.type === 'text' ? answer.content.text : `[${answer.content.type}]`;
    return text(`LLM response: ${reply}`);
  }),

  tool('test_elicitation', 'Asks the user for a username and an email (elicitation)', z.object({ message: z.string().describe('The message to show the user') }), ({ message }, ctx) =>
    elicit(ctx, {
      message,
      requestedSchema: {
        type: 'object',
        properties: { username: { type: 'string', description: "User's response" }, email: { type: 'string', description: "User's email address" } },
        required: ['username', 'email'],
      },
    }),
  ),

  tool('test_elicitation_sep1034_defaults', 'Elicits a form whose fields all carry default values (SEP-1034)', NO_ARGS, (_a, ctx) => elicit(ctx, DEFAULTS_FORM as unknown as ElicitRequest['params'])),

  tool('test_elicitation_sep1330_enums', 'Elicits a form with every enum shape (SEP-1330)', NO_ARGS, (_a, ctx) => elicit(ctx, ENUMS_FORM as unknown as ElicitRequest['params'])),

  {
    name: 'json_schema_2020_12_tool',
    description: 'Advertises an input schema that uses the JSON Schema 2020-12 vocabulary',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: { address: { $anchor: 'addressDef', type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
      properties: {
        name: { type: 'string' },
        address: { $ref: '#/$defs/address' },
        contactMethod: { type: 'string', enum: ['phone', 'email'] },
        phone: { type: 'string' },
        email: { type: 'string' },
      },
      allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
      if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
      then: { required: ['phone'] },
      else: { required: ['email'] },
      additionalProperties: false,
    },
    call: async (args) => text(`Received ${JSON.stringify(args)}`),
  },

  // As the suite's own reference server does: the stream is closed at once, the result follows
  // 100 ms later, and the priming event asked the client to wait 5 s (retryInterval below).
  tool('test_reconnection', 'Closes its SSE stream mid-call; the result arrives after the client resumes (SEP-1699)', NO_ARGS, async (_a, ctx) => {
    ctx.extra.closeSSEStream?.();
    await sleep(100);
    return text('Reconnection test finished: the result was delivered after the stream was closed');
  }),
];

const TOOLS_BY_NAME = new Map(TOOLS.map((t) => [t.name, t]));

// ---------------------------------------------------------------------------------------------
// Resources and prompts.

interface StaticResource {
  readonly uri: string;
  readonly name: string;
  readonly description: string;
  readonly mimeType: string;
  readonly body: { text: string } | { blob: string };
}

const RESOURCES: readonly StaticResource[] = [
  { uri: 'test://static-text', name: 'static-text', description: 'A fixed text resource', mimeType: 'text/plain', body: { text: 'This is the content of the static text resource.' } },
  { uri: 'test://static-binary', name: 'static-binary', description: 'A fixed binary resource (a 1x1 PNG)', mimeType: 'image/png', body: { blob: RED_PIXEL } },
  { uri: 'test://watched-resource', name: 'watched-resource', description: 'A resource clients may subscribe to', mimeType: 'text/plain', body: { text: 'Watched resource, revision 1.' } },
];

const TEMPLATE = { uriTemplate: 'test://template/{id}/data', name: 'template-data', description: 'Data for one id', mimeType: 'application/json' };
const TEMPLATE_MATCH = /^test:\/\/template\/([^/]+)\/data$/;

function readResource(uri: string): ReadResourceResult {
  const fixed = RESOURCES.find((r) => r.uri === uri);
  if (fixed) return { contents: [{ uri, mimeType: fixed.mimeType, ...fixed.body }] };
  const id = TEMPLATE_MATCH.exec(uri)?.[1];
  if (id !== undefined) {
    const decoded = decodeURIComponent(id);
    return { contents: [{ uri, mimeType: TEMPLATE.mimeType, text: JSON.stringify({ id: decoded, templateTest: true, data: `Data for ID: ${decoded}` }) }] };
  }
  throw new McpError(ErrorCode.InvalidParams, 'Resource not found', { uri });
}

interface Prompt {
  readonly name: string;
  readonly description: string;
  readonly args: z.ZodObject;
  render(args: Record<string, string>): GetPromptResult;
}

const PROMPTS: readonly Prompt[] = [
  {
    name: 'test_simple_prompt',
    description: 'A prompt without arguments',
    args: z.object({}),
    render: () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }] }),
  },
  {
    name: 'test_prompt_with_arguments',
    description: 'A prompt that quotes its two arguments',
    args: z.object({ arg1: z.string().describe('First test argument'), arg2: z.string().describe('Second test argument') }),
    render: ({ arg1, arg2 }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }] }),
  },
  {
    name: 'test_prompt_with_embedded_resource',
    description: 'A prompt that embeds the resource it is given',
    args: z.object({ resourceUri: z.string().describe('URI of the resource to embed') }),
    render: ({ resourceUri }) => ({
      messages: [
        { role: 'user', content: { type: 'resource', resource: { uri: resourceUri!, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  },
  {
    name: 'test_prompt_with_image',
    description: 'A prompt that carries an image',
    args: z.object({}),
    render: () => ({
      messages: [
        { role: 'user', content: { type: 'image', data: RED_PIXEL, mimeType: 'image/png' } },
        { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
      ],
    }),
  },
];

const PROMPTS_BY_NAME = new Map(PROMPTS.map((p) => [p.name, p]));

/** Completion candidates per (reference, argument). */
const COMPLETIONS: Record<string, Record<string, string[]>> = {
  'prompt:test_prompt_with_arguments': { arg1: ['paris', 'park', 'party', 'test', 'testing'], arg2: ['world', 'word', 'work'] },
  'prompt:test_prompt_with_embedded_resource': { resourceUri: RESOURCES.map((r) => r.uri) },
  [`resource:${TEMPLATE.uriTemplate}`]: { id: ['1', '12', '123', '42'] },
};

// ---------------------------------------------------------------------------------------------
// One MCP server per session.

const LOG_SEVERITY = LoggingLevelSchema.options;

class SessionState {
  logLevel: LoggingLevel = 'debug';
  readonly subscriptions = new Set<string>();

  /** Sends a log message tied to the request (so it travels on that request's stream) unless filtered out. */
  async log(extra: Extra, level: LoggingLevel, data: string): Promise<void> {
    if (LOG_SEVERITY.indexOf(level) < LOG_SEVERITY.indexOf(this.logLevel)) return;
    await extra.sendNotification({ method: 'notifications/message', params: { level, logger: 'conformance-server', data } });
  }
}

function buildServer(): Server {
  const session = new SessionState();
  const server = new Server(
    { name: 'mcp-gateway-conformance-reference', version: '1.0.0' },
    { capabilities: { tools: {}, resources: { subscribe: true }, prompts: {}, logging: {}, completions: {} } },
  );

  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: TOOLS.map(({ name, description, inputSchema }) => ({ name, description, inputSchema: inputSchema as { type: 'object' } })),
  }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const found = TOOLS_BY_NAME.get(req.params.name);
    if (!found) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
    return found.call(req.params.arguments ?? {}, { extra, server, session });
  });

  server.setRequestHandler(ListResourcesRequestSchema, () => ({
    resources: RESOURCES.map(({ uri, name, description, mimeType }) => ({ uri, name, description, mimeType })),
  }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({ resourceTemplates: [TEMPLATE] }));
  server.setRequestHandler(ReadResourceRequestSchema, (req) => readResource(req.params.uri));
  server.setRequestHandler(SubscribeRequestSchema, (req) => {
    session.subscriptions.add(req.params.uri);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, (req) => {
    session.subscriptions.delete(req.params.uri);
    return {};
  });

  server.setRequestHandler(ListPromptsRequestSchema, () => ({
    prompts: PROMPTS.map(({ name, description, args }) => ({
      name,
      description,
      arguments: Object.entries(args.shape).map(([arg, schema]) => ({ name: arg, description: (schema as z.ZodType).description, required: true })),
    })),
  }));
  server.setRequestHandler(GetPromptRequestSchema, (req) => {
    const prompt = PROMPTS_BY_NAME.get(req.params.name);
    if (!prompt) throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${req.params.name}`);
    const parsed = prompt.args.safeParse(req.params.arguments ?? {});
    if (!parsed.success) throw new McpError(ErrorCode.InvalidParams, `Invalid arguments for ${prompt.name}: ${z.prettifyError(parsed.error)}`);
    return prompt.render(parsed.data as Record<string, string>);
  });

  server.setRequestHandler(CompleteRequestSchema, (req) => {
    const { ref, argument } = req.params;
    const key = ref.type === 'ref/prompt' ? `prompt:${ref.name}` : `resource:${ref.uri}`;
    const values = (COMPLETIONS[key]?.[argument.name] ?? []).filter((v) => v.startsWith(argument.value));
    return { completion: { values, total: values.length, hasMore: false } };
  });

  server.setRequestHandler(SetLevelRequestSchema, (req) => {
    session.logLevel = req.params.level;
    return {};
  });

  return server;
}

// ---------------------------------------------------------------------------------------------
// HTTP (the event store and the loopback check live in reference-fixtures.ts).

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function serve(): Promise<void> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') {
      const transport = sessions.get(sid);
      if (!transport) return rpcError(res, 404, -32001, 'Session not found');
      return transport.handleRequest(req, res);
    }

    if (req.method !== 'POST') return rpcError(res, 400, ErrorCode.InvalidRequest, 'Bad Request: Mcp-Session-Id header is required');
    let body: unknown;
    try {
      body = await readJson(req);
    } catch {
      return rpcError(res, 400, ErrorCode.ParseError, 'Parse error: the body is not JSON');
    }
    if (!isInitializeRequest(body)) return rpcError(res, 400, ErrorCode.InvalidRequest, 'Bad Request: Mcp-Session-Id header is required');

    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new MemoryEventStore<JSONRPCMessage>(),
      // The reference server's value (SEP-1699 polling: clients reconnect after it).
      retryInterval: 5000,
      onsessioninitialized: (id) => void sessions.set(id, transport),
      onsessionclosed: (id) => void sessions.delete(id),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await buildServer().connect(transport);
    await transport.handleRequest(req, res, body);
  }

  await serveMcp(handle, () => Promise.allSettled([...sessions.values()].map((t) => t.close())));
}

await serve();
