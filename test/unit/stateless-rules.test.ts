import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { describe, it } from 'node:test';
import { errorBody, GatewayError } from '../../src/errors.ts';
import { parseBody, type Envelope } from '../../src/protocol/jsonrpc.ts';
import { checkRequest, checkVersionHeader, decodeHeaderValue, encodeHeaderValue, isStatelessRequest, rejectUnmarked, unsupportedVersion } from '../../src/protocol/stateless.ts';
import { StateSealer, type ContinuationState } from '../../src/translate/state.ts';

const V = '2026-07-28';
const META = { 'io.modelcontextprotocol/protocolVersion': V, 'io.modelcontextprotocol/clientCapabilities': {} };

function message(method: string, params: Record<string, unknown> | undefined): Envelope {
  const parsed = parseBody(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 9, method, ...(params ? { params } : {}) })));
  assert.equal(parsed.batch, false);
  return (parsed as { message: Envelope }).message;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(err instanceof GatewayError, String(err));
    return err.code;
  }
}

describe('revision 2026-07-28: which requests are stateless', () => {
  const table: [string, IncomingHttpHeaders, boolean][] = [
    ['the 2026-07-28 header', { 'mcp-protocol-version': V }, true],
    ['the 2026-07-28 header with a session id (ignored)', { 'mcp-protocol-version': V, 'mcp-session-id': 'x' }, true],
    ['an unknown version without a session', { 'mcp-protocol-version': '2099-01-01' }, true],
    ['an unknown version on a session (a session-era error)', { 'mcp-protocol-version': '2099-01-01', 'mcp-session-id': 'x' }, false],
    ['a session-era version', { 'mcp-protocol-version': '2025-11-25' }, false],
    ['2024-11-05', { 'mcp-protocol-version': '2024-11-05' }, false],
    ['no header (2025-03-26 by default)', {}, false],
  ];
  for (const [name, headers, want] of table) it(name, () => assert.equal(isStatelessRequest(headers), want));

  it('a body with the _meta version but no header is a header mismatch', () => {
    assert.equal(codeOf(() => rejectUnmarked(message('tools/list', { _meta: META }))), 'MCPGW_ERR_HEADER_MISMATCH');
    assert.equal(codeOf(() => rejectUnmarked(message('tools/list', {}))), undefined);
    assert.equal(codeOf(() => rejectUnmarked(message('initialize', { _meta: META }))), undefined);
  });
});

describe('revision 2026-07-28: headers against the body', () => {
  const h = (method: string, extra: IncomingHttpHeaders = {}): IncomingHttpHeaders => ({ 'mcp-protocol-version': V, 'mcp-method': method, ...extra });
  const call = (name: unknown, meta: Record<string, unknown> = META) => ({ name, arguments: {}, _meta: meta });
  const table: [string, IncomingHttpHeaders, string, Record<string, unknown> | undefined, string | undefined][] = [
    ['a matching tools/call', h('tools/call', { 'mcp-name': 'echo' }), 'tools/call', call('echo'), undefined],
    ['a matching resources/read', h('resources/read', { 'mcp-name': 'file:///a b' }), 'resources/read', { uri: 'file:///a b', _meta: META }, undefined],
    ['Mcp-Name in base64', h('tools/call', { 'mcp-name': `=?base64?${Buffer.from('héllo').toString('base64')}?=` }), 'tools/call', call('héllo'), undefined],
    ['a method without a name', h('tools/list'), 'tools/list', { _meta: META }, undefined],
    ['no params at all', h('tools/list'), 'tools/list', undefined, 'MCPGW_ERR_INVALID_META'],
    ['no _meta', h('tools/list'), 'tools/list', {}, 'MCPGW_ERR_INVALID_META'],
    ['_meta without protocolVersion', h('tools/list'), 'tools/list', { _meta: { 'io.modelcontextprotocol/clientCapabilities': {} } }, 'MCPGW_ERR_INVALID_META'],
    ['_meta without clientCapabilities', h('tools/list'), 'tools/list', { _meta: { 'io.modelcontextprotocol/protocolVersion': V } }, 'MCPGW_ERR_INVALID_META'],
    ['clientInfo is optional', h('tools/list'), 'tools/list', { _meta: META }, undefined],
    ['_meta version ≠ header', h('tools/list'), 'tools/list', { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } }, 'MCPGW_ERR_HEADER_MISMATCH'],
    ['no Mcp-Method', { 'mcp-protocol-version': V }, 'tools/list', { _meta: META }, 'MCPGW_ERR_HEADER_MISMATCH'],
    ['Mcp-Method ≠ method', h('prompts/list'), 'tools/list', { _meta: META }, 'MCPGW_ERR_HEADER_MISMATCH'],
    ['Mcp-Method differs in case', h('Tools/List'), 'tools/list', { _meta: META }, 'MCPGW_ERR_HEADER_MISMATCH'],
    ['no Mcp-Name on tools/call', h('tools/call'), 'tools/call', call('echo'), 'MCPGW_ERR_HEADER_MISMATCH'],
    ['Mcp-Name ≠ params.name', h('tools/call', { 'mcp-name': 'add' }), 'tools/call', call('echo'), 'MCPGW_ERR_HEADER_MISMATCH'],
    ['Mcp-Name ≠ params.uri', h('resources/read', { 'mcp-name': 'demo://other' }), 'resources/read', { uri: 'demo://readme', _meta: META }, 'MCPGW_ERR_HEADER_MISMATCH'],
    ['Mcp-Name without a body name', h('prompts/get', { 'mcp-name': 'greet' }), 'prompts/get', { _meta: META }, 'MCPGW_ERR_HEADER_MISMATCH'],
    ['Mcp-Name not valid base64', h('tools/call', { 'mcp-name': '=?base64?@@@?=' }), 'tools/call', call('echo'), 'MCPGW_ERR_HEADER_MISMATCH'],
    ['a removed method: initialize', h('initialize'), 'initialize', { _meta: META }, 'MCPGW_ERR_METHOD_NOT_FOUND'],
    ['a removed method: ping', h('ping'), 'ping', { _meta: META }, 'MCPGW_ERR_METHOD_NOT_FOUND'],
    ['a removed method: logging/setLevel', h('logging/setLevel'), 'logging/setLevel', { level: 'info', _meta: META }, 'MCPGW_ERR_METHOD_NOT_FOUND'],
    ['a removed method: resources/subscribe', h('resources/subscribe', {}), 'resources/subscribe', { uri: 'x', _meta: META }, 'MCPGW_ERR_METHOD_NOT_FOUND'],
  ];
  for (const [name, headers, method, params, want] of table) {
    it(`${name} → ${want ?? 'accepted'}`, () => assert.equal(codeOf(() => checkRequest(headers, message(method, params))), want));
  }

  it('returns the envelope', () => {
    const env = checkRequest(h('tools/list'), message('tools/list', { _meta: { ...META, 'io.modelcontextprotocol/clientInfo': { name: 'c', version: '1' }, 'io.modelcontextprotocol/logLevel': 'info' } }));
    assert.deepEqual(env, { protocolVersion: V, clientCapabilities: {}, clientInfo: { name: 'c', version: '1' }, logLevel: 'info' });
  });

  it('an unsupported version names what is supported and echoes what was asked (-32022)', () => {
    assert.equal(codeOf(() => checkVersionHeader({ 'mcp-protocol-version': 'v999' })), 'MCPGW_ERR_UNSUPPORTED_VERSION');
    const body = JSON.parse(errorBody(unsupportedVersion('v999'), 4)) as { id: number; error: { code: number; data: Record<string, unknown> } };
    assert.equal(body.id, 4);
    assert.equal(body.error.code, -32022);
    assert.deepEqual(body.error.data, { supported: [V], requested: 'v999', code: 'MCPGW_ERR_UNSUPPORTED_VERSION' });
  });
});

describe('header value encoding', () => {
  const table: [string, string][] = [
    ['us-west1', 'us-west1'],
    ['Hello, 世界', '=?base64?SGVsbG8sIOS4lueVjA==?='],
    [' padded ', '=?base64?IHBhZGRlZCA=?='],
    ['line1\nline2', '=?base64?bGluZTEKbGluZTI=?='],
    ['=?base64?literal?=', '=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?='],
  ];
  for (const [plain, encoded] of table) {
    it(`${JSON.stringify(plain)} ↔ ${encoded}`, () => {
      assert.equal(encodeHeaderValue(plain), encoded);
      assert.equal(decodeHeaderValue(encoded), plain);
    });
  }
});

describe('sealed requestState', () => {
  const state: ContinuationState = { call: 'c1', node: 'n1', principal: 'p', server: 's', method: 'tools/call', name: 'x', expires: 123 };
  const sealer = new StateSealer('a-secret-of-at-least-32-characters!!');

  it('opens what it sealed, on any replica with the same secret', () => {
    assert.deepEqual(new StateSealer('a-secret-of-at-least-32-characters!!').open(sealer.seal(state)), state);
  });

  const sealed = sealer.seal(state);
  const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
  const forged: [string, unknown][] = [
    ['another key', new StateSealer('another-secret-of-at-least-32-chars!!').seal(state)],
    ['a changed byte', flip(sealed, 20)],
    ['a changed tag', flip(sealed, sealed.length - 2)],
    ['appended text', `${sealed}-TAMPERED`],
    ['truncated', sealed.slice(0, 20)],
    ['not a string', 42],
    ['no prefix', sealed.slice(4)],
  ];
  for (const [name, token] of forged) it(`refuses ${name}`, () => assert.equal(sealer.open(token), undefined));
});
