import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { ERRORS, errorBody, GatewayError } from '../../src/errors.ts';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

it('documents every error code in docs/errors.md with its status and JSON-RPC code', () => {
  for (const [code, { status, rpc }] of Object.entries(ERRORS)) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${code}\` |`));
    assert.ok(row, `${code} is missing from docs/errors.md`);
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

it('renders a JSON-RPC error body with the gateway code in data', () => {
  const body = JSON.parse(errorBody(new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'it expired'), 7)) as Record<string, unknown>;
  assert.deepEqual(body, {
    jsonrpc: '2.0',
    id: 7,
    error: { code: -32001, message: 'Session not found or ended; initialize a new session: it expired', data: { code: 'MCPGW_ERR_SESSION_NOT_FOUND' } },
  });
});
