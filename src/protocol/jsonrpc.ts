import { GatewayError, type JsonRpcId } from '../errors.ts';

/** What the gateway needs to know of one JSON-RPC message; the bytes themselves pass through. */
export interface Envelope {
  readonly kind: 'request' | 'notification' | 'response';
  readonly id: JsonRpcId;
  readonly method: string | undefined;
  readonly params: Record<string, unknown> | undefined;
}

export type Incoming =
  | { readonly batch: false; readonly message: Envelope }
  | { readonly batch: true; readonly messages: readonly Envelope[] };

/** Parses a POST body; throws MCPGW_ERR_PARSE or MCPGW_ERR_INVALID_REQUEST. */
export function parseBody(body: Buffer | string): Incoming {
  let value: unknown;
  try {
    value = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    throw new GatewayError('MCPGW_ERR_PARSE');
  }
  if (Array.isArray(value)) {
    if (value.length === 0) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'empty batch');
    return { batch: true, messages: value.map(envelope) };
  }
  return { batch: false, message: envelope(value) };
}

export function envelope(value: unknown): Envelope {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a message must be a JSON object');
  }
  const m = value as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'jsonrpc must be "2.0"');
  const id = m.id;
  const hasId = 'id' in m;
  if (hasId && typeof id !== 'string' && (typeof id !== 'number' || !Number.isFinite(id)) && id !== null) {
    throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'id must be a string or a number');
  }
  if (typeof m.method === 'string') {
    if (m.method.length === 0) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'method must not be empty');
    if (id === null) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a request id must not be null');
    const params = m.params;
    if (params !== undefined && (params === null || typeof params !== 'object')) {
      throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'params must be an object or an array');
    }
    return {
      kind: hasId ? 'request' : 'notification',
      id: hasId ? (id as string | number) : null,
      method: m.method,
      params: Array.isArray(params) ? undefined : (params as Record<string, unknown> | undefined),
    };
  }
  if ('method' in m) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'method must be a string');
  if (!hasId) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a message needs a method or an id');
  const hasResult = 'result' in m;
  const hasError = 'error' in m;
  if (hasResult === hasError) throw new GatewayError('MCPGW_ERR_INVALID_REQUEST', 'a response has exactly one of result or error');
  return { kind: 'response', id: (id ?? null) as JsonRpcId, method: undefined, params: undefined };
}
