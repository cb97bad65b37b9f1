/**
 * Every error the gateway answers with, in one table. A code maps to an HTTP status and a
 * JSON-RPC error code; `satisfies` makes a new code impossible to forget here, and
 * test/unit/errors.test.ts checks each one is documented in docs/errors.md.
 *
 * One JSON-RPC code, one meaning (docs/errors.md#how-codes-are-assigned): a code a protocol fixes
 * keeps it; every other code takes the next free number of its family's range, outside the range
 * JSON-RPC reserves (-32768..-32000), as MCP 2026-07-28 asks of implementation-defined codes:
 *   -31000..-31099  the caller's fault (4xx)
 *   -31100..-31199  an upstream's (502/503/504)
 *   -31200..-31299  ours, or a service the gateway itself depends on (500/503)
 * A retired number is not given to another code. The test fails on a shared or misplaced code.
 */
export const ERRORS = {
  // Fixed by a protocol: JSON-RPC 2.0, MCP 2026-07-28, and -32001 (what the MCP SDKs' HTTP transports send for an unknown session).
  // stateless: HEADER_MISMATCH, UNSUPPORTED_VERSION, INVALID_META, METHOD_NOT_FOUND, REQUEST_STATE and NOT_TRANSLATABLE are
  // revision 2026-07-28's (src/protocol/stateless.ts) and translation's between eras (src/translate/).
  MCPGW_ERR_PARSE: { status: 400, rpc: -32700, message: 'Parse error: the body is not valid JSON' },
  MCPGW_ERR_INVALID_REQUEST: { status: 400, rpc: -32600, message: 'Invalid Request: not a JSON-RPC 2.0 message' },
  MCPGW_ERR_METHOD_NOT_FOUND: { status: 404, rpc: -32601, message: 'Method not found' },
  MCPGW_ERR_INVALID_META: { status: 400, rpc: -32602, message: 'Invalid params: the request _meta lacks a required io.modelcontextprotocol key' },
  MCPGW_ERR_INTERNAL: { status: 500, rpc: -32603, message: 'Internal gateway error' },
  MCPGW_ERR_SESSION_NOT_FOUND: { status: 404, rpc: -32001, message: 'Session not found or ended; initialize a new session' },
  MCPGW_ERR_HEADER_MISMATCH: { status: 400, rpc: -32020, message: 'Header mismatch' },
  MCPGW_ERR_UNSUPPORTED_VERSION: { status: 400, rpc: -32022, message: 'Unsupported protocol version' },
  // The caller's fault: -31000..-31099.
  MCPGW_ERR_BATCH_NOT_SUPPORTED: { status: 400, rpc: -31000, message: 'JSON-RPC batches are not allowed for this protocol revision' },
  MCPGW_ERR_BATCH_TOO_LARGE: { status: 400, rpc: -31001, message: 'A JSON-RPC batch may hold at most 100 messages' },
  MCPGW_ERR_BODY_TOO_LARGE: { status: 413, rpc: -31002, message: 'Request body is larger than the configured limit' },
  MCPGW_ERR_HEADERS_TOO_LARGE: { status: 431, rpc: -31003, message: 'Request headers are larger than the HTTP server reads' },
  MCPGW_ERR_MALFORMED_HTTP: { status: 400, rpc: -31004, message: 'The request is not well-formed HTTP' },
  MCPGW_ERR_REQUEST_TIMEOUT: { status: 408, rpc: -31005, message: 'The request head or body did not arrive within the time limit' },
  MCPGW_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, rpc: -31006, message: 'Content-Type must be application/json' },
  MCPGW_ERR_NOT_ACCEPTABLE: { status: 406, rpc: -31007, message: 'Accept must include application/json and text/event-stream' },
  MCPGW_ERR_METHOD_NOT_ALLOWED: { status: 405, rpc: -31008, message: 'HTTP method not allowed on this endpoint' },
  MCPGW_ERR_UNKNOWN_SERVER: { status: 404, rpc: -31009, message: 'No MCP server is published under this name' },
  MCPGW_ERR_FORBIDDEN_ORIGIN: { status: 403, rpc: -31010, message: 'Origin is not allowed' },
  MCPGW_ERR_UNSUPPORTED_PROTOCOL_VERSION: { status: 400, rpc: -31011, message: 'Unsupported MCP-Protocol-Version' },
  MCPGW_ERR_UNAUTHORIZED: { status: 401, rpc: -31012, message: 'Authentication required' },
  MCPGW_ERR_INVALID_TOKEN: { status: 401, rpc: -31013, message: 'The access token is invalid' },
  MCPGW_ERR_INSUFFICIENT_SCOPE: { status: 403, rpc: -31014, message: 'The access token lacks a required scope' },
  MCPGW_ERR_FORBIDDEN: { status: 403, rpc: -31015, message: 'The caller is not allowed to use this server' },
  MCPGW_ERR_RATE_LIMITED: { status: 429, rpc: -31016, message: 'Rate limit exceeded' },
  MCPGW_ERR_SESSION_REQUIRED: { status: 400, rpc: -31017, message: 'Mcp-Session-Id header is required' },
  MCPGW_ERR_ALREADY_INITIALIZED: { status: 400, rpc: -31018, message: 'initialize must be sent without Mcp-Session-Id' },
  MCPGW_ERR_NOT_INITIALIZED: { status: 400, rpc: -31019, message: 'The session is not initialized: send initialize first' },
  MCPGW_ERR_CALLER_CAPACITY: { status: 429, rpc: -31020, message: 'This caller holds as many upstream processes or sessions of this server as it may; end one (DELETE) or retry later' },
  MCPGW_ERR_STREAM_CONFLICT: { status: 409, rpc: -31021, message: 'A standalone SSE stream is already open for this session' },
  MCPGW_ERR_EVENTS_GONE: { status: 410, rpc: -31022, message: 'Cannot resume: the events after this Last-Event-ID are not available' },
  MCPGW_ERR_NOT_FOUND: { status: 404, rpc: -31023, message: 'Not found' },
  MCPGW_ERR_REQUEST_STATE: { status: 400, rpc: -31024, message: 'requestState is invalid, expired or unknown here; send the original request again without it' },
  MCPGW_ERR_NOT_TRANSLATABLE: { status: 400, rpc: -31025, message: 'This message cannot be translated between protocol eras' },
  MCPGW_ERR_TOKEN_EXCHANGE_DENIED: { status: 403, rpc: -31026, message: "The authorization server refused to exchange the caller's token for one for this upstream" },
  // An upstream's fault: -31100..-31199.
  MCPGW_ERR_UPSTREAM_UNAVAILABLE: { status: 502, rpc: -31100, message: 'Upstream MCP server could not be reached' },
  MCPGW_ERR_UPSTREAM_PROTOCOL: { status: 502, rpc: -31101, message: 'Upstream MCP server answered with an invalid response' },
  MCPGW_ERR_UPSTREAM_CREDENTIALS: { status: 502, rpc: -31102, message: 'Could not obtain credentials for the upstream MCP server' },
  MCPGW_ERR_NO_HEALTHY_UPSTREAM: { status: 503, rpc: -31103, message: 'No healthy upstream replica for this server' },
  MCPGW_ERR_CAPACITY: { status: 503, rpc: -31104, message: 'Upstream process limit reached; retry later' },
  MCPGW_ERR_UPSTREAM_TIMEOUT: { status: 504, rpc: -31105, message: 'Upstream MCP server did not answer in time' },
  MCPGW_ERR_STREAM_LOST: { status: 502, rpc: -31106, message: 'The upstream stream broke and could not be resumed; the outcome of the request is unknown' },
  // Ours, or a service the gateway depends on: -31200..-31299.
  MCPGW_ERR_AUTH_UNAVAILABLE: { status: 503, rpc: -31200, message: 'The token issuer keys could not be fetched; retry later' },
  MCPGW_ERR_SHUTTING_DOWN: { status: 503, rpc: -31201, message: 'Gateway is shutting down; retry on another replica' },
  MCPGW_ERR_EVENT_LOG_UNAVAILABLE: { status: 503, rpc: -31202, message: 'The event log is unavailable; the 2024-11-05 SSE transport cannot run without it' },
  MCPGW_ERR_TOKEN_EXCHANGE_FAILED: { status: 503, rpc: -31203, message: "The caller's token could not be exchanged for one for this upstream; retry later" },
} as const satisfies Record<`MCPGW_ERR_${string}`, { status: number; rpc: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** An error with a code from the table; thrown by core modules, rendered by the HTTP layer. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly rpc: number;
  readonly detail: string | undefined;
  /** Response headers that belong to this error (`WWW-Authenticate` on 401/403). */
  headers: Record<string, string> | undefined;
  /** stateless: extra `error.data` members the protocol defines (e.g. `supported` and `requested` of -32022). */
  data: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    const entry = ERRORS[code];
    super(detail ? `${entry.message}: ${detail}` : entry.message, options);
    this.name = 'GatewayError';
    this.code = code;
    this.status = entry.status;
    this.rpc = entry.rpc;
    this.detail = detail;
  }
}

export type JsonRpcId = string | number | null;

/** The JSON-RPC error response for a code; `data.code` carries the gateway code for machines. */
export function errorResponse(err: GatewayError, id: JsonRpcId = null): { jsonrpc: '2.0'; id: JsonRpcId; error: { code: number; message: string; data: Record<string, unknown> } } {
  return { jsonrpc: '2.0', id, error: { code: err.rpc, message: err.message, data: { ...err.data, code: err.code } } };
}

/** `errorResponse` as the text sent on the wire. */
export function errorBody(err: GatewayError, id: JsonRpcId = null): string {
  return JSON.stringify(errorResponse(err, id));
}

/** A batch's answer when `err` ended it: the error for each of its requests, under its id. */
export function errorsBody(err: GatewayError, ids: readonly JsonRpcId[]): string {
  return JSON.stringify(ids.map((id) => errorResponse(err, id)));
}

/** Raised for bad configuration; the CLI prints it and exits 1 without a stack trace. */
/**
 * An error that answers only the caller it came for — their token could not be exchanged, or the
 * upstream turned them away —, so what the gateway asked on their behalf says nothing for another
 * caller (src/translate/translator.ts era probe, src/upstream/param-marks.ts list look).
 */
export function isCallersOwn(err: unknown): boolean {
  return err instanceof GatewayError && (err.code.startsWith('MCPGW_ERR_TOKEN_EXCHANGE_') || err.code === 'MCPGW_ERR_FORBIDDEN');
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
