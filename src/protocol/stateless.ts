import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors.ts';
import { headerValue } from './headers.ts';
import type { Envelope } from './jsonrpc.ts';
import { isSessionRevision, STATELESS_REVISION } from './revisions.ts';

/**
 * The rules of revision 2026-07-28 on Streamable HTTP, without any I/O: which request is one,
 * what its headers must say, which methods exist. Every request stands alone: its protocol
 * version and client capabilities travel in `params._meta`, mirrored into `MCP-Protocol-Version`,
 * `Mcp-Method` and `Mcp-Name` headers so intermediaries can route on them.
 */

export const META_PROTOCOL_VERSION = 'io.modelcontextprotocol/protocolVersion';
export const META_CLIENT_CAPABILITIES = 'io.modelcontextprotocol/clientCapabilities';
export const META_CLIENT_INFO = 'io.modelcontextprotocol/clientInfo';
export const META_LOG_LEVEL = 'io.modelcontextprotocol/logLevel';
export const META_SERVER_INFO = 'io.modelcontextprotocol/serverInfo';
export const META_SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';

/** The request-envelope keys only the protocol layer reads (an upstream of the session era must not see them). */
export const ENVELOPE_KEYS: readonly string[] = [META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL];

/** What this gateway answers in `supported` of an UnsupportedProtocolVersionError. */
export const STATELESS_VERSIONS: readonly string[] = [STATELESS_REVISION];

/** Where `Mcp-Name` comes from, per method; methods not listed carry no `Mcp-Name`. */
const NAME_SOURCE: Readonly<Record<string, string>> = {
  'tools/call': 'name',
  'prompts/get': 'name',
  'resources/read': 'uri',
  // The tasks extension (io.modelcontextprotocol/tasks) names the task.
  'tasks/get': 'taskId',
  'tasks/update': 'taskId',
  'tasks/cancel': 'taskId',
};

/** The core methods of 2026-07-28 (client → server requests). */
export const CORE_METHODS: ReadonlySet<string> = new Set([
  'server/discover',
  'tools/list',
  'tools/call',
  'prompts/list',
  'prompts/get',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'completion/complete',
  'subscriptions/listen',
]);

/** Session-era methods this revision removed: answered 404 -32601 here, whatever the upstream speaks. */
export const REMOVED_METHODS: ReadonlySet<string> = new Set([
  'initialize',
  'ping',
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
  'notifications/initialized',
  'notifications/roots/list_changed',
]);

/** The methods whose results carry caching hints (`ttlMs`, `cacheScope`). */
export const CACHEABLE_RESULTS: ReadonlySet<string> = new Set(['server/discover', 'tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);

/** The methods that may answer `resultType: "input_required"`. */
export const INPUT_METHODS: ReadonlySet<string> = new Set(['tools/call', 'prompts/get', 'resources/read']);

/**
 * Is this a 2026-07-28 request? Decided on headers alone: `MCP-Protocol-Version: 2026-07-28`, or
 * a version this gateway does not know sent without a session (a client of a later revision,
 * which deserves the UnsupportedProtocolVersionError that names what is supported). A session-era
 * request always carries a session-era version or a session id.
 */
export function isStatelessRequest(headers: IncomingHttpHeaders): boolean {
  const version = headerValue(headers['mcp-protocol-version']);
  if (version === STATELESS_REVISION) return true;
  if (!version || isSessionRevision(version)) return false;
  return headers['mcp-session-id'] === undefined;
}

/** A 2026-07-28 `subscriptions/listen`: a stream that stays open, which a draining replica ends at once. */
export function isListenRequest(headers: IncomingHttpHeaders): boolean {
  return headers['mcp-method'] === 'subscriptions/listen' && isStatelessRequest(headers);
}

/** A body that says 2026-07-28 in its `_meta` but came without the headers (checked where no session exists). */
export function rejectUnmarked(message: Envelope): void {
  const meta = message.params?._meta as Record<string, unknown> | undefined;
  if (meta && typeof meta === 'object' && META_PROTOCOL_VERSION in meta && message.method !== 'initialize') {
    throw new GatewayError('MCPGW_ERR_HEADER_MISMATCH', 'the MCP-Protocol-Version header is missing');
  }
}

/** The per-request facts a 2026-07-28 request declares in `params._meta`. */
export interface RequestEnvelope {
  readonly protocolVersion: string;
  readonly clientCapabilities: Record<string, unknown>;
  readonly clientInfo: { readonly name: string; readonly version: string } | undefined;
  readonly logLevel: string | undefined;
}

/**
 * Header checks that need no body: the version must be one this gateway serves. Throws
 * MCPGW_ERR_UNSUPPORTED_VERSION (400, -32022, naming the supported versions).
 */
export function checkVersionHeader(headers: IncomingHttpHeaders): void {
  const version = headerValue(headers['mcp-protocol-version']);
  if (version !== STATELESS_REVISION) throw unsupportedVersion(version);
}

export function unsupportedVersion(requested: string): GatewayError {
  const err = new GatewayError('MCPGW_ERR_UNSUPPORTED_VERSION', `"${requested}" is not served here; supported: ${STATELESS_VERSIONS.join(', ')}`);
  err.data = { supported: STATELESS_VERSIONS, requested };
  return err;
}

/**
 * Checks a 2026-07-28 request against its headers and returns its envelope. Throws:
 * MCPGW_ERR_INVALID_META (400, -32602) when `_meta` lacks a required key, MCPGW_ERR_HEADER_MISMATCH
 * (400, -32020) when a required header is missing or says something else than the body, and
 * MCPGW_ERR_METHOD_NOT_FOUND (404, -32601) for a method this revision removed.
 */
export function checkRequest(headers: IncomingHttpHeaders, message: Envelope): RequestEnvelope {
  const method = message.method!;
  const meta = message.params?._meta as Record<string, unknown> | undefined;
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) throw new GatewayError('MCPGW_ERR_INVALID_META', 'params._meta is missing');
  const protocolVersion = meta[META_PROTOCOL_VERSION];
  if (typeof protocolVersion !== 'string') throw new GatewayError('MCPGW_ERR_INVALID_META', `_meta["${META_PROTOCOL_VERSION}"] is missing`);
  const clientCapabilities = meta[META_CLIENT_CAPABILITIES];
  if (clientCapabilities === null || typeof clientCapabilities !== 'object' || Array.isArray(clientCapabilities)) {
    throw new GatewayError('MCPGW_ERR_INVALID_META', `_meta["${META_CLIENT_CAPABILITIES}"] is missing`);
  }
  const header = headerValue(headers['mcp-protocol-version']);
  if (protocolVersion !== header) throw mismatch('MCP-Protocol-Version', header, protocolVersion);

  const methodHeader = headers['mcp-method'];
  if (methodHeader === undefined) throw new GatewayError('MCPGW_ERR_HEADER_MISMATCH', 'the Mcp-Method header is missing');
  if (headerValue(methodHeader) !== method) throw mismatch('Mcp-Method', headerValue(methodHeader), method);
  const source = NAME_SOURCE[method];
  if (source !== undefined) {
    const bodyName = message.params?.[source];
    const nameHeader = headers['mcp-name'];
    if (nameHeader === undefined) {
      if (typeof bodyName === 'string') throw new GatewayError('MCPGW_ERR_HEADER_MISMATCH', 'the Mcp-Name header is missing');
    } else {
      const decoded = decodeHeaderValue(headerValue(nameHeader));
      if (decoded === undefined) throw new GatewayError('MCPGW_ERR_HEADER_MISMATCH', 'the Mcp-Name header is not valid base64');
      if (decoded !== bodyName) throw mismatch('Mcp-Name', decoded, String(bodyName));
    }
  }
  if (REMOVED_METHODS.has(method)) throw new GatewayError('MCPGW_ERR_METHOD_NOT_FOUND', `"${method}" does not exist in revision ${STATELESS_REVISION}`);

  const info = meta[META_CLIENT_INFO] as { name?: unknown; version?: unknown } | undefined;
  const level = meta[META_LOG_LEVEL];
  return {
    protocolVersion,
    clientCapabilities: clientCapabilities as Record<string, unknown>,
    clientInfo: info && typeof info.name === 'string' && typeof info.version === 'string' ? { name: info.name, version: info.version } : undefined,
    logLevel: typeof level === 'string' ? level : undefined,
  };
}

function mismatch(header: string, got: string, body: string): GatewayError {
  return new GatewayError('MCPGW_ERR_HEADER_MISMATCH', `${header} header value '${got}' does not match body value '${body}'`);
}

/** The value `Mcp-Name` must carry for this request, or undefined when the method has none. */
export function nameOf(method: string, params: Record<string, unknown> | undefined): string | undefined {
  const source = NAME_SOURCE[method];
  const value = source === undefined ? undefined : params?.[source];
  return typeof value === 'string' ? value : undefined;
}

const SENTINEL = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/;
/** Visible ASCII and space, not starting or ending with whitespace: a header value as is. */
const PLAIN = /^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$/;

/** A header value per the spec's Value Encoding: plain, or `=?base64?…?=` around UTF-8. */
export function decodeHeaderValue(value: string): string | undefined {
  const m = SENTINEL.exec(value);
  if (!m) return value;
  const bytes = Buffer.from(m[1]!, 'base64');
  // Node decodes leniently; a value that does not round-trip was not valid base64.
  if (bytes.toString('base64') !== m[1]) return undefined;
  return bytes.toString('utf8');
}

export function encodeHeaderValue(value: string): string {
  if (PLAIN.test(value) && !SENTINEL.test(value)) return value;
  return `=?base64?${Buffer.from(value, 'utf8').toString('base64')}?=`;
}

/** The standard headers of a 2026-07-28 request the gateway makes itself. */
export function standardHeaders(method: string, params: Record<string, unknown> | undefined): Record<string, string> {
  const h: Record<string, string> = { 'mcp-protocol-version': STATELESS_REVISION, 'mcp-method': method };
  const name = nameOf(method, params);
  if (name !== undefined) h['mcp-name'] = encodeHeaderValue(name);
  return h;
}
