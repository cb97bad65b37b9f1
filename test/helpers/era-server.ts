#!/usr/bin/env node
/**
 * A reference MCP server for both protocol eras, on SDK v2 (`@modelcontextprotocol/server`): the
 * fixtures the official conformance suite names for 2025-11-25 and for 2026-07-28, written once.
 * A handler that needs the client's input returns `inputRequired(...)`; served statelessly
 * (2026-07-28) that is the answer, served over a session (2025-era) the SDK pushes real
 * elicitation / sampling / roots requests instead. So the same server runs as
 *
 *   --era stateless   2026-07-28 only (`createMcpHandler`, legacy traffic refused)
 *   --era session     the session era only (Streamable HTTP with Mcp-Session-Id and resumable streams)
 *
 * on 127.0.0.1 (`--port`, default random), `/mcp`, with Host/Origin checks against DNS rebinding.
 * Prints `{"listening":<port>}` once ready; SIGTERM closes everything and exits.
 */
import {
  acceptedContent,
  CLIENT_CAPABILITIES_META_KEY,
  createMcpHandler,
  createRequestStateCodec,
  inputRequired,
  inputResponse,
  MissingRequiredClientCapabilityError,
  ProtocolError,
  ProtocolErrorCode,
  ResourceNotFoundError,
  Server,
  type CallToolResult,
  type GetPromptResult,
  type InputRequiredResult,
  type ServerContext,
} from '@modelcontextprotocol/server';
import { DEFAULTS_FORM, ENUMS_FORM, onePixelPng, serveMcp, toneWav } from './reference-fixtures.ts';
import { fromWeb, readBody, sessionHandler, toWeb, type WebMcp } from './web-mcp.ts';

type Era = 'stateless' | 'session';
const era: Era = process.argv.includes('--era') && process.argv[process.argv.indexOf('--era') + 1] === 'session' ? 'session' : 'stateless';

const REPLICA = process.env.ERA_REPLICA ?? 'era';
const counters = { cancelled: 0, calls: 0 };

const RED = onePixelPng(255, 0, 0);
const BLUE = onePixelPng(0, 0, 255);
const TONE = toneWav(50);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const text = (t: string): CallToolResult => ({ content: [{ type: 'text', text: t }] });

// ---------------------------------------------------------------------------------------------
// Tools. Each is (arguments, context) → result, with a plain JSON schema for its arguments.

type ToolResult = CallToolResult | InputRequiredResult;
interface Tool {
  readonly description: string;
  readonly inputSchema?: Record<string, unknown>;
  run(args: Record<string, unknown>, ctx: ServerContext): Promise<ToolResult>;
}

const EMPTY = { type: 'object', properties: {} } as const;
const nameSchema = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } as const;
const stateCodec = createRequestStateCodec<{ round: number }>({ key: new TextEncoder().encode('era-server-request-state-key-0123456789'), ttlSeconds: 600 });

/** The client's declared capabilities: per request (2026-07-28) or from initialize (session). */
function clientCaps(ctx: ServerContext, server: Server): Record<string, unknown> {
  const perRequest = (ctx.mcpReq._meta as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES_META_KEY];
  return (perRequest as Record<string, unknown> | undefined) ?? (server.getClientCapabilities() as Record<string, unknown> | undefined) ?? {};
}

function elicitForm(message: string, requestedSchema: Record<string, unknown>) {
  return inputRequired.elicit({ message, requestedSchema } as Parameters<typeof inputRequired.elicit>[0]);
}

/** One-question tool: ask, then report what came back. */
function asking(key: string, request: () => ReturnType<typeof inputRequired.elicit>, report: (answer: unknown) => string): Tool['run'] {
  return async (_a, ctx) => {
    const view = inputResponse(ctx.mcpReq.inputResponses, key);
    if (view.kind === 'missing') return inputRequired({ inputRequests: { [key]: request() } });
    return text(report(ctx.mcpReq.inputResponses?.[key]));
  };
}

function buildTools(server: Server, notify: Notify): Record<string, Tool> {
  return {
    test_simple_text: { description: 'Returns one fixed text block', run: async () => text('This is a simple text response for testing.') },
    test_image_content: { description: 'Returns a 1x1 red PNG', run: async () => ({ content: [{ type: 'image', data: RED, mimeType: 'image/png' }] }) },
    test_audio_content: { description: 'Returns a short WAV', run: async () => ({ content: [{ type: 'audio', data: TONE, mimeType: 'audio/wav' }] }) },
    test_embedded_resource: {
      description: 'Returns an embedded text resource',
      run: async () => ({ content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }] }),
    },
    test_multiple_content_types: {
      description: 'Returns text, an image and an embedded resource',
      run: async () => ({
        content: [
          { type: 'text', text: 'Multiple content types test:' },
          { type: 'image', data: BLUE, mimeType: 'image/png' },
          { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) } },
        ],
      }),
    },
    test_error_handling: { description: 'Always fails, as a tool result', run: async () => ({ isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] }) },
    test_tool_with_progress: {
      description: 'Reports progress 0, 50 and 100 of 100',
      run: async (_a, ctx) => {
        const token = ctx.mcpReq._meta?.progressToken;
        for (const [i, progress] of [0, 50, 100].entries()) {
          if (i > 0) await sleep(50);
          if (token !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress, total: 100 } });
        }
        return text('Progress tool finished');
      },
    },
    test_tool_with_logging: {
      description: 'Logs three info messages while it runs',
      run: async (_a, ctx) => {
        for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
          await ctx.mcpReq.log('info', data);
          await sleep(30);
        }
        return text('Logging tool finished after 3 messages');
      },
    },
    test_logging_tool: {
      description: 'Logs one message (only to a request that asked for a log level)',
      run: async (_a, ctx) => {
        await ctx.mcpReq.log('info', 'a log message');
        return text('logged');
      },
    },
    test_sampling: {
      description: 'Asks the client LLM to answer a prompt',
      inputSchema: { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] },
      run: async (args, ctx) => {
        const view = inputResponse(ctx.mcpReq.inputResponses, 'answer');
        if (view.kind === 'missing') return inputRequired({ inputRequests: { answer: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt) } }], maxTokens: 100 }) } });
        const answer = ctx.mcpReq.inputResponses?.answer as { content?: { type?: string; text?: string } };
        return text(`LLM response: ${answer?.content?.text ?? '[no text]'}`);
      },
    },
    test_elicitation: {
      description: 'Asks the user for a username and an email',
      inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
      run: async (args, ctx) =>
        asking(
          'user',
          () => elicitForm(String(args.message), { type: 'object', properties: { username: { type: 'string', description: "User's response" }, email: { type: 'string', description: "User's email address" } }, required: ['username', 'email'] }),
          (a) => `Elicitation completed: action=${(a as { action?: string }).action}, content=${JSON.stringify((a as { content?: unknown }).content ?? {})}`,
        )(args, ctx),
    },
    test_elicitation_sep1034_defaults: {
      description: 'Elicits a form whose fields carry default values',
      run: asking('profile', () => elicitForm(DEFAULTS_FORM.message, DEFAULTS_FORM.requestedSchema), (a) => `Elicitation completed: ${JSON.stringify(a)}`),
    },
    test_elicitation_sep1330_enums: {
      description: 'Elicits a form with every enum shape',
      run: asking('choices', () => elicitForm(ENUMS_FORM.message, ENUMS_FORM.requestedSchema), (a) => `Elicitation completed: ${JSON.stringify(a)}`),
    },
    test_input_required_result_elicitation: {
      description: 'Asks for a name (input_required), then greets',
      run: async (_a, ctx) => {
        const answer = acceptedContent<{ name: string }>(ctx.mcpReq.inputResponses, 'user_name');
        if (!answer) return inputRequired({ inputRequests: { user_name: elicitForm('What is your name?', nameSchema) } });
        return text(`Hello, ${answer.name}!`);
      },
    },
    test_input_required_result_sampling: {
      description: 'Asks the client LLM a question (input_required)',
      run: async (_a, ctx) => {
        const view = inputResponse(ctx.mcpReq.inputResponses, 'capital_question');
        if (view.kind === 'missing') {
          return inputRequired({ inputRequests: { capital_question: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }], maxTokens: 100 }) } });
        }
        const answer = ctx.mcpReq.inputResponses?.capital_question as { content?: { text?: string } };
        return text(`The model said: ${answer?.content?.text ?? ''}`);
      },
    },
    test_input_required_result_list_roots: {
      description: 'Asks for the client roots (input_required)',
      run: async (_a, ctx) => {
        const roots = (ctx.mcpReq.inputResponses?.client_roots as { roots?: { uri: string }[] } | undefined)?.roots;
        if (!roots) return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
        return text(`Roots: ${roots.map((r) => r.uri).join(', ')}`);
      },
    },
    test_input_required_result_request_state: {
      description: 'Asks for a confirmation and carries requestState',
      run: async (_a, ctx) => {
        const state = ctx.mcpReq.requestState<{ round: number }>();
        const confirm = inputResponse(ctx.mcpReq.inputResponses, 'confirm');
        if (!state || confirm.kind === 'missing') {
          return inputRequired({ inputRequests: { confirm: elicitForm('Confirm?', { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] }) }, requestState: await stateCodec.mint({ round: 1 }) });
        }
        return text(`state-ok (round ${state.round})`);
      },
    },
    test_input_required_result_multiple_inputs: {
      description: 'Asks for an elicitation, a sampling and the roots at once',
      run: async (_a, ctx) => {
        const r = ctx.mcpReq.inputResponses ?? {};
        if (!r.user_name || !r.capital_question || !r.client_roots) {
          return inputRequired({
            inputRequests: {
              user_name: elicitForm('What is your name?', nameSchema),
              capital_question: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }], maxTokens: 100 }),
              client_roots: inputRequired.listRoots(),
            },
            requestState: await stateCodec.mint({ round: 1 }),
          });
        }
        return text('Received all three inputs');
      },
    },
    test_input_required_result_multi_round: {
      description: 'Asks two questions, one round each, state carried along',
      run: async (_a, ctx) => {
        const state = ctx.mcpReq.requestState<{ round: number }>();
        const r = ctx.mcpReq.inputResponses ?? {};
        if (!state || !r.step1) {
          if (state?.round === 2 && r.step2) return text('Both rounds done');
          return inputRequired({ inputRequests: { step1: elicitForm('Step 1: your name?', nameSchema) }, requestState: await stateCodec.mint({ round: 1 }) });
        }
        if (state.round === 1) return inputRequired({ inputRequests: { step2: elicitForm('Step 2: your city?', { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }) }, requestState: await stateCodec.mint({ round: 2 }) });
        return text('Both rounds done');
      },
    },
    test_input_required_result_tampered_state: {
      description: 'Carries signed requestState; rejects a changed one',
      run: async (_a, ctx) => {
        if (!ctx.mcpReq.requestState<{ round: number }>()) return inputRequired({ inputRequests: { confirm: elicitForm('Confirm?', { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] }) }, requestState: await stateCodec.mint({ round: 1 }) });
        return text('state verified');
      },
    },
    test_input_required_result_capabilities: {
      description: 'Asks only for what the client declared',
      run: async (_a, ctx) => {
        const caps = clientCaps(ctx, server);
        const r = ctx.mcpReq.inputResponses ?? {};
        const requests: Record<string, ReturnType<typeof inputRequired.elicit>> = {};
        if (caps.elicitation && !r.user_name) requests.user_name = elicitForm('What is your name?', nameSchema);
        if (caps.sampling && !r.capital_question) requests.capital_question = inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Capital of France?' } }], maxTokens: 50 });
        if (Object.keys(requests).length > 0) return inputRequired({ inputRequests: requests });
        return text('Nothing left to ask');
      },
    },
    test_missing_capability: {
      description: 'Needs the sampling capability',
      run: async (_a, ctx) => {
        if (!clientCaps(ctx, server).sampling) throw new MissingRequiredClientCapabilityError({ requiredCapabilities: { sampling: {} } });
        return text('sampling declared');
      },
    },
    test_streaming_elicitation: {
      description: 'Streams progress, then asks for a name',
      run: async (_a, ctx) => {
        const answer = acceptedContent<{ name: string }>(ctx.mcpReq.inputResponses, 'user_name');
        if (answer) return text(`Hello, ${answer.name}!`);
        const token = ctx.mcpReq._meta?.progressToken;
        if (token !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress: 1, total: 2 } });
        return inputRequired({ inputRequests: { user_name: elicitForm('What is your name?', nameSchema) } });
      },
    },
    test_trigger_tool_change: {
      description: 'Changes the tool list',
      run: async () => {
        notify('tools');
        return text('tools changed');
      },
    },
    test_trigger_prompt_change: {
      description: 'Changes the prompt list',
      run: async () => {
        notify('prompts');
        return text('prompts changed');
      },
    },
    // Not conformance fixtures: what the gateway's own tests observe.
    slow_count: {
      description: 'Counts to `count`, a progress notification per step, 20 ms apart; stops when cancelled',
      inputSchema: { type: 'object', properties: { count: { type: 'integer' } }, required: ['count'] },
      run: async (args, ctx) => {
        const token = ctx.mcpReq._meta?.progressToken;
        for (let i = 1; i <= Number(args.count); i++) {
          await sleep(20);
          if (ctx.mcpReq.signal.aborted) {
            counters.cancelled++;
            throw new Error('cancelled');
          }
          if (token !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: Number(args.count) } });
        }
        return text(`counted to ${String(args.count)} on ${REPLICA}`);
      },
    },
    stats: { description: 'Counters of this process', run: async () => text(JSON.stringify({ ...counters, replica: REPLICA })) },
    json_schema_2020_12_tool: {
      description: 'Advertises a JSON Schema 2020-12 input schema',
      inputSchema: {
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        type: 'object',
        $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
        properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
        additionalProperties: false,
      },
      run: async (args) => text(`Received ${JSON.stringify(args)}`),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Resources and prompts.

const RESOURCES = [
  { uri: 'test://static-text', name: 'static-text', mimeType: 'text/plain', body: { text: 'This is the content of the static text resource.' } },
  { uri: 'test://static-binary', name: 'static-binary', mimeType: 'image/png', body: { blob: RED } },
  { uri: 'test://watched-resource', name: 'watched-resource', mimeType: 'text/plain', body: { text: 'Watched resource, revision 1.' } },
] as const;
const TEMPLATE = { uriTemplate: 'test://template/{id}/data', name: 'template-data', mimeType: 'application/json' };
const TEMPLATE_MATCH = /^test:\/\/template\/([^/]+)\/data$/;

function readResource(uri: string) {
  const fixed = RESOURCES.find((r) => r.uri === uri);
  if (fixed) return { contents: [{ uri, mimeType: fixed.mimeType, ...fixed.body }] };
  const id = TEMPLATE_MATCH.exec(uri)?.[1];
  if (id !== undefined) return { contents: [{ uri, mimeType: TEMPLATE.mimeType, text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] };
  throw new ResourceNotFoundError(uri);
}

interface Prompt {
  readonly args: readonly string[];
  render(args: Record<string, string>, ctx: ServerContext): Promise<GetPromptResult | InputRequiredResult>;
}

const user = (t: string) => ({ role: 'user' as const, content: { type: 'text' as const, text: t } });
const PROMPTS: Record<string, Prompt> = {
  test_simple_prompt: { args: [], render: async () => ({ messages: [user('This is a simple prompt for testing.')] }) },
  test_prompt_with_arguments: { args: ['arg1', 'arg2'], render: async (a) => ({ messages: [user(`Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'`)] }) },
  test_prompt_with_embedded_resource: {
    args: ['resourceUri'],
    render: async (a) => ({
      messages: [{ role: 'user', content: { type: 'resource', resource: { uri: a.resourceUri!, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } } }, user('Please process the embedded resource above.')],
    }),
  },
  test_prompt_with_image: { args: [], render: async () => ({ messages: [{ role: 'user', content: { type: 'image', data: RED, mimeType: 'image/png' } }, user('Please analyze the image above.')] }) },
  test_input_required_result_prompt: {
    args: [],
    render: async (_a, ctx) => {
      const answer = acceptedContent<{ name: string }>(ctx.mcpReq.inputResponses, 'user_name');
      if (!answer) return inputRequired({ inputRequests: { user_name: elicitForm('Whom is the prompt for?', nameSchema) } });
      return { messages: [user(`A prompt for ${answer.name}.`)] };
    },
  },
};

const COMPLETIONS: Record<string, Record<string, string[]>> = {
  'prompt:test_prompt_with_arguments': { arg1: ['paris', 'park', 'party', 'test'], arg2: ['world', 'word', 'work'] },
  [`resource:${TEMPLATE.uriTemplate}`]: { id: ['1', '12', '123', '42'] },
};

// ---------------------------------------------------------------------------------------------
// The server: one instance per request (stateless) or per session.

type Notify = (list: 'tools' | 'prompts') => void;
const HINT = { ttlMs: 60_000, cacheScope: 'public' } as const;

function buildServer(notify: Notify): Server {
  const server = new Server(
    { name: `era-reference-${era}`, version: '1.0.0' },
    {
      capabilities: { tools: { listChanged: true }, prompts: { listChanged: true }, resources: { subscribe: true, listChanged: true }, logging: {}, completions: {} },
      requestState: { verify: stateCodec.verify },
      cacheHints: { 'tools/list': HINT, 'prompts/list': HINT, 'resources/list': HINT, 'resources/templates/list': HINT, 'resources/read': HINT, 'server/discover': HINT },
    },
  );
  const tools = buildTools(server, notify);
  server.setRequestHandler('tools/list', () => ({
    tools: Object.entries(tools).map(([name, t]) => ({ name, description: t.description, inputSchema: (t.inputSchema ?? EMPTY) as { type: 'object' } })),
  }));
  server.setRequestHandler('tools/call', async (req, ctx) => {
    const tool = tools[req.params.name];
    counters.calls++;
    if (!tool) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
    return tool.run(req.params.arguments ?? {}, ctx);
  });
  server.setRequestHandler('resources/list', () => ({ resources: RESOURCES.map(({ uri, name, mimeType }) => ({ uri, name, mimeType })) }));
  server.setRequestHandler('resources/templates/list', () => ({ resourceTemplates: [TEMPLATE] }));
  server.setRequestHandler('resources/read', (req) => readResource(req.params.uri));
  server.setRequestHandler('resources/subscribe', () => ({}));
  server.setRequestHandler('resources/unsubscribe', () => ({}));
  server.setRequestHandler('prompts/list', () => ({
    prompts: Object.entries(PROMPTS).map(([name, p]) => ({ name, description: `The ${name} fixture`, arguments: p.args.map((a) => ({ name: a, description: `The ${a} argument`, required: true })) })),
  }));
  server.setRequestHandler('prompts/get', (req, ctx) => {
    const prompt = PROMPTS[req.params.name];
    if (!prompt) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown prompt: ${req.params.name}`);
    return prompt.render((req.params.arguments ?? {}) as Record<string, string>, ctx);
  });
  server.setRequestHandler('completion/complete', (req) => {
    const { ref, argument } = req.params;
    const key = ref.type === 'ref/prompt' ? `prompt:${ref.name}` : `resource:${ref.uri}`;
    const values = (COMPLETIONS[key]?.[argument.name] ?? []).filter((v) => v.startsWith(argument.value));
    return { completion: { values, total: values.length, hasMore: false } };
  });
  return server;
}

// ---------------------------------------------------------------------------------------------
// HTTP.

async function serve(): Promise<void> {
  let web: WebMcp;
  if (era === 'stateless') {
    const handler = createMcpHandler(() => buildServer((list) => (list === 'tools' ? handler.notify.toolsChanged() : handler.notify.promptsChanged())), { legacy: 'reject' });
    web = { handle: (req) => handler.fetch(req), close: () => handler.close() };
  } else {
    web = sessionHandler(() => {
      const server: Server = buildServer((list) => void (list === 'tools' ? server.sendToolListChanged() : server.sendPromptListChanged()).catch(() => {}));
      return server;
    });
  }

  await serveMcp(async (req, res) => fromWeb(await web.handle(toWeb(req, res, await readBody(req))), res), () => web.close());
}

await serve();
