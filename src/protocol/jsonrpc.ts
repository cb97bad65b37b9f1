import { GatewayError, type JsonRpcId } from '../errors.ts';

/** What the gateway knows of one JSON-RPC message, checked. */
export interface Envelope {
  readonly kind: 'request' | 'notification' | 'response';
  readonly id: JsonRpcId;
  readonly method: string | undefined;
  readonly params: Record<string, unknown> | undefined;
  /**
   * The message as the gateway rebuilt it from what it checked: JSON-RPC's own members only, so
   * whatever else the caller wrote (members of its own, duplicate keys, odd whitespace) is not
   * part of what reaches an upstream (src/protocol/wire.ts writes it).
   */
  readonly message: Readonly<Record<string, unknown>>;
}

export type Incoming =
  | { readonly batch: false; readonly message: Envelope }
  | { readonly batch: true; readonly messages: readonly Envelope[] };

/**
 * The most messages one batch may hold: every item costs work on each side (policy, framing, an
 * answer to match), and the official SDK refuses more than this too.
 */
export const MAX_BATCH = 100;

/**
 * The deepest nesting of arrays and objects a body may have. Every layer that walks a message
 * (serializing it for an upstream, redacting it for the audit log) recurses, and a body nested
 * thousands deep would exhaust the stack there; no MCP message needs more than a few dozen.
 */
export const MAX_DEPTH = 100;

/** Parses a POST body; throws MCPGW_ERR_PARSE or MCPGW_ERR_INVALID_REQUEST. */
export function parseBody(body: Buffer | string): Incoming {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new GatewayError('MCPGW_ERR_PARSE');
  }
  if (tooDeep(text)) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', `nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) {
    if (value.length === 0) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'empty batch');
    if (value.length > MAX_BATCH) throw new GatewayError('MCPGW_ERR_BATCH_TOO_LARGE', `${value.length} messages; at most ${MAX_BATCH}`);
    const messages = value.map(envelope);
    // Two requests under one id could not be told apart in the answers (nor filtered apart).
    const ids = new Set<string>();
    for (const m of messages) {
      if (m.kind !== 'request') continue;
      const key = `${typeof m.id}:${String(m.id)}`;
      if (ids.has(key)) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', `two requests of the batch have the id ${JSON.stringify(m.id)}`);
      ids.add(key);
    }
    return { batch: true, messages };
  }
  return { batch: false, message: envelope(value) };
}

/** Does `messages` hold a request (notifications and responses await no answer)? */
export function holdsRequest(messages: readonly Envelope[]): boolean {
  return messages.some((m) => m.kind === 'request');
}

/** The ids of the requests among `messages` (notifications and responses await no answer). */
export function requestIds(messages: readonly Envelope[]): JsonRpcId[] {
  const ids: JsonRpcId[] = [];
  for (const m of messages) if (m.kind === 'request') ids.push(m.id);
  return ids;
}

/**
 * A Map key for a JSON-RPC id, or for whatever a peer sent as one: 1 and "1" are two keys, and
 * so are null and "null", true and "true" — no answer is taken for a request it does not answer.
 * (The number and string forms are kept in the event log with guarded streams: never change them.)
 */
export function idKey(id: unknown): string {
  if (typeof id === 'number') return `n${id}`;
  if (typeof id === 'string') return `s${id}`;
  return `x${JSON.stringify(id)}`;
}

/** A body holding a batch (a JSON array), even of one message. */
export function isBatchBody(body: Buffer | string | undefined): boolean {
  if (body === undefined) return false;
  const text = typeof body === 'string' ? body : body.toString('utf8', 0, Math.min(body.length, 64));
  return text.trimStart().startsWith('[');
}

export function envelope(value: unknown): Envelope {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a message must be a JSON object');
  }
  const m = value as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'jsonrpc must be "2.0"');
  const id = m.id;
  const hasId = 'id' in m;
  // MCP's ids are strings or integers (an SDK peer drops anything else without a word, and a
  // request it dropped would never be answered), within what JSON numbers carry exactly.
  if (hasId && typeof id !== 'string' && (typeof id !== 'number' || !Number.isSafeInteger(id)) && id !== null) {
    throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'id must be a string or an integer');
  }
  if (typeof m.method === 'string') {
    if (m.method.length === 0) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'method must not be empty');
    if (id === null) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a request id must not be null');
    const params = m.params;
    if (params !== undefined) checkParams(params);
    checkNamedItems(m.method, params as Record<string, unknown> | undefined);
    const message: Record<string, unknown> = hasId ? { jsonrpc: '2.0', id, method: m.method } : { jsonrpc: '2.0', method: m.method };
    if (params !== undefined) message.params = params;
    return {
      kind: hasId ? 'request' : 'notification',
      id: hasId ? (id as string | number) : null,
      method: m.method,
      params: params as Record<string, unknown> | undefined,
      message,
    };
  }
  if ('method' in m) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'method must be a string');
  if (!hasId) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a message needs a method or an id');
  const hasResult = 'result' in m;
  const hasError = 'error' in m;
  if (hasResult === hasError) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a response has exactly one of result or error');
  if (hasResult && !isObject(m.result)) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'result must be an object');
  let outcome: Record<string, unknown>;
  if (hasError) {
    const e = m.error as { code?: unknown; message?: unknown; data?: unknown } | null;
    if (!isObject(e) || !Number.isSafeInteger(e.code) || typeof e.message !== 'string') {
      throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'error must be an object with an integer code and a string message');
    }
    const error: Record<string, unknown> = { code: e.code, message: e.message };
    if (e.data !== undefined) error.data = e.data;
    outcome = { error };
  } else {
    outcome = { result: m.result };
  }
  return { kind: 'response', id: (id ?? null) as JsonRpcId, method: undefined, params: undefined, message: { jsonrpc: '2.0', id: id ?? null, ...outcome } };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** MCP's params are an object (no positional params), and its `_meta` and progress token have fixed types. */
function checkParams(params: unknown): void {
  if (!isObject(params)) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'params must be an object');
  const meta = params._meta;
  if (meta === undefined) return;
  if (!isObject(meta)) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'params._meta must be an object');
  const token = meta.progressToken;
  if (token !== undefined && typeof token !== 'string' && !Number.isSafeInteger(token)) {
    throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'params._meta.progressToken must be a string or an integer');
  }
}

/** The param that names the item a request acts on, by method (MCP: a string). */
const ITEM_PARAM: Readonly<Record<string, 'name' | 'uri'>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  'resources/subscribe': 'uri',
  'resources/unsubscribe': 'uri',
};

/**
 * The names and URIs a request acts on are strings. Every name-based rule (curation, auth policy,
 * per-tool limits) reads only a string, and an upstream that looks a tool up by property
 * (`tools[name]`) reads `["secret"]` as `secret`: passed on, such a name went past them all.
 */
function checkNamedItems(method: string, params: Record<string, unknown> | undefined): void {
  // One without it is left to the upstream (and to 2026-07-28's own answer for a removed method).
  const key = ITEM_PARAM[method];
  if (key !== undefined && params?.[key] !== undefined && typeof params[key] !== 'string') throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', `${method} needs params.${key} as a string`);
  if (method === 'completion/complete') {
    const ref = params?.ref as { type?: unknown; name?: unknown; uri?: unknown } | undefined;
    if (ref?.type === 'ref/prompt' && typeof ref.name !== 'string') throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a ref/prompt needs its name as a string');
    if (ref?.type === 'ref/resource' && typeof ref.uri !== 'string') throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a ref/resource needs its uri as a string');
  } else if (method === 'subscriptions/listen') {
    const uris = (params?.notifications as { resourceSubscriptions?: unknown } | undefined)?.resourceSubscriptions;
    if (Array.isArray(uris) && !uris.every((u) => typeof u === 'string')) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'resourceSubscriptions must be strings');
  }
}

/** Does this (valid) JSON text nest arrays and objects deeper than MAX_DEPTH? One pass, strings skipped. */
function tooDeep(text: string): boolean {
  // Each level takes an opening and a closing bracket: a shorter text cannot be too deep (most are).
  if (text.length <= 2 * MAX_DEPTH) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
