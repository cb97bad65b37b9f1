import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { ERRORS, errorBody, GatewayError, type ErrorCode } from '../../src/errors.ts';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

it('documents every error code in docs/errors.md with its status and JSON-RPC code', () => {
  for (const [code, { status, rpc }] of Object.entries(ERRORS)) {
    const rows = doc.split('\n').filter((l) => l.startsWith(`| \`${code}\` |`));
    assert.equal(rows.length, 1, `${code} needs one row in docs/errors.md`);
    const row = rows[0]!;
    const cells = row.split('|').map((c) => c.trim());
    assert.equal(cells[2], String(status), `${code}: documented HTTP status`);
    assert.equal(cells[3], String(rpc), `${code}: documented JSON-RPC code`);
  }
});

it('keeps status families apart: caller 4xx, upstream 502-504, ours 500', () => {
  for (const [code, { status }] of Object.entries(ERRORS)) {
    assert.ok([400, 401, 403, 404, 405, 406, 408, 409, 410, 413, 415, 429, 431, 500, 502, 503, 504].includes(status), `${code}: status ${status}`);
  }
  assert.equal(ERRORS.MCPGW_ERR_INTERNAL.status, 500);
});

/**
 * The codes a protocol fixes, and the entries it fixes each one for; every other code is in one
 * of the gateway's RANGES. Only a JSON-RPC 2.0 standard code may be listed for two entries (when
 * a protocol fixes it for both; `error.data.code` then tells them apart): none is today.
 */
const FIXED: ReadonlyMap<number, readonly ErrorCode[]> = new Map<number, readonly ErrorCode[]>([
  [-32700, ['MCPGW_ERR_PARSE']], // JSON-RPC 2.0: Parse error.
  [-32600, ['MCPGW_ERR_INVALID_REQUEST']], // JSON-RPC 2.0: Invalid Request.
  [-32601, ['MCPGW_ERR_METHOD_NOT_FOUND']], // MCP 2026-07-28 Streamable HTTP: an unknown method is 404 with -32601.
  [-32602, ['MCPGW_ERR_INVALID_META']], // MCP 2026-07-28: a request without a required _meta field MUST get -32602.
  [-32603, ['MCPGW_ERR_INTERNAL']], // JSON-RPC 2.0: Internal error.
  // No specification's, but what the MCP SDKs' HTTP transports answer (with 404) for an unknown
  // session; 2026-07-28 keeps such earlier uses of -32000..-32019 ("legacy").
  [-32001, ['MCPGW_ERR_SESSION_NOT_FOUND']],
  [-32020, ['MCPGW_ERR_HEADER_MISMATCH']], // MCP 2026-07-28: HeaderMismatch.
  [-32022, ['MCPGW_ERR_UNSUPPORTED_VERSION']], // MCP 2026-07-28: UnsupportedProtocolVersion.
]);
const JSON_RPC_STANDARD = new Set([-32700, -32600, -32601, -32602, -32603]);

/** The gateway's own codes by whose fault (docs/errors.md#how-codes-are-assigned), with the statuses each may carry. */
const RANGES: readonly { fault: string; first: number; last: number; statuses: (s: number) => boolean }[] = [
  { fault: "the caller's", first: -31000, last: -31099, statuses: (s) => s >= 400 && s < 500 },
  { fault: "an upstream's", first: -31100, last: -31199, statuses: (s) => s === 502 || s === 503 || s === 504 },
  { fault: "the gateway's", first: -31200, last: -31299, statuses: (s) => s === 500 || s === 503 },
];

it('gives no two codes one JSON-RPC code, unless a protocol fixes a standard code for both', () => {
  const byRpc = new Map<number, string[]>();
  for (const [code, { rpc }] of Object.entries(ERRORS)) byRpc.set(rpc, [...(byRpc.get(rpc) ?? []), code]);
  for (const [rpc, codes] of byRpc) {
    if (codes.length === 1) continue;
    assert.ok(JSON_RPC_STANDARD.has(rpc), `${codes.join(' and ')} share ${rpc}: give each a number of its own`);
    for (const code of codes) assert.ok(FIXED.get(rpc)?.includes(code as ErrorCode), `${code} shares ${rpc}, which no protocol fixes for it`);
  }
  for (const [rpc, codes] of FIXED) assert.ok(codes.length === 1 || JSON_RPC_STANDARD.has(rpc), `${rpc} is not a JSON-RPC standard code: one entry only`);
});

it('places every code a protocol does not fix in the range of whose fault it is', () => {
  for (const [rpc, codes] of FIXED) for (const code of codes) assert.equal(ERRORS[code].rpc, rpc, `${code} is listed as fixed at ${rpc}`);
  for (const [code, { status, rpc }] of Object.entries(ERRORS)) {
    if (FIXED.get(rpc)?.includes(code as ErrorCode)) continue;
    const range = RANGES.find((r) => rpc <= r.first && rpc >= r.last);
    assert.ok(range, `${code}: ${rpc} is neither fixed by a protocol nor in a range of docs/errors.md`);
    assert.ok(range.statuses(status), `${code}: HTTP ${status} does not fit ${range.fault} range (${range.first}…${range.last})`);
  }
});

it('sends no code MCP 2026-07-28 reserves, retires or leaves to SDKs, beyond those listed as fixed', () => {
  const defined = new Set([-32020, -32021, -32022]);
  const retired = new Set([-32002, -32042]); // resource not found (now -32602), URL elicitation required
  for (const [code, { rpc }] of Object.entries(ERRORS)) {
    assert.ok(!retired.has(rpc), `${code}: ${rpc} is retired`);
    if (rpc <= -32020 && rpc >= -32099) assert.ok(defined.has(rpc), `${code}: ${rpc} is reserved for the MCP specification`);
    if (rpc <= -32000 && rpc >= -32019) assert.ok(FIXED.get(rpc)?.includes(code as ErrorCode), `${code}: ${rpc} is in the legacy range, where SDKs give codes meanings of their own`);
  }
});

it('renders a JSON-RPC error body with the gateway code in data', () => {
  const body = JSON.parse(errorBody(new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'it expired'), 7)) as Record<string, unknown>;
  assert.deepEqual(body, {
    jsonrpc: '2.0',
    id: 7,
    error: { code: -32001, message: 'Session not found or ended; initialize a new session: it expired', data: { code: 'MCPGW_ERR_SESSION_NOT_FOUND' } },
  });
});
