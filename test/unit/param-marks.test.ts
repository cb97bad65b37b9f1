import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GATEWAY_ORIGINATED } from '../../src/pipeline/admission.ts';
import { ParamMarks } from '../../src/upstream/param-marks.ts';
import { ownRequest, type ClientRequest } from '../../src/upstream/types.ts';

const QUERY = { name: 'query', inputSchema: { type: 'object', properties: { region: { type: 'string', 'x-mcp-header': 'Region' }, limit: { type: 'integer', 'x-mcp-header': 'Limit' }, sql: { type: 'string' } } } };
const BROKEN = { name: 'broken', inputSchema: { type: 'object', properties: { list: { type: 'array', 'x-mcp-header': 'List' } } } };

function callOf(tool: string, args: Record<string, unknown>, headers: Record<string, string> = {}, argumentsWritten = false): ClientRequest {
  const req = ownRequest({ 'content-type': 'application/json', ...headers }, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: tool, arguments: args } }, '2026-07-28', GATEWAY_ORIGINATED);
  return argumentsWritten ? { ...req, argumentsWritten } : req;
}

const nothingSent = () => Promise.reject(new Error('no list is asked for'));

describe('upstream: the Mcp-Param-* headers of a tools/call, from the tool marks learnt', () => {
  const marks = new ParamMarks();
  marks.learn([QUERY, BROKEN, { name: 'plain', inputSchema: { type: 'object' } }]);

  it("a marked argument's header is written from the body; the caller's for it never passes, its others do", async () => {
    const req = callOf('query', { region: 'eu-west1', sql: 'x' }, { 'mcp-param-region': 'us-east1', 'mcp-param-limit': '9', 'mcp-param-extra': 'y', 'mcp-param-bad': '=?base64?QQ?=' });
    assert.deepEqual(await marks.headersFor(req, nothingSent), { 'mcp-param-extra': 'y', 'mcp-param-region': 'eu-west1' });
  });

  it('arguments the gateway wrote: only the headers written from them', async () => {
    const req = callOf('query', { region: 'Zürich', limit: 3 }, { 'mcp-param-extra': 'y' }, true);
    assert.deepEqual(await marks.headersFor(req, nothingSent), { 'mcp-param-region': '=?base64?WsO8cmljaA==?=', 'mcp-param-limit': '3' });
  });

  it("marks invalid, or a tool without marks: the caller's well-formed headers (none where the gateway wrote the arguments)", async () => {
    assert.deepEqual(await marks.headersFor(callOf('broken', { list: [1] }, { 'mcp-param-list': '1' }), nothingSent), { 'mcp-param-list': '1' });
    assert.deepEqual(await marks.headersFor(callOf('broken', { list: [1] }, { 'mcp-param-list': '1' }, true), nothingSent), {});
    assert.deepEqual(await marks.headersFor(callOf('plain', {}, { 'mcp-param-x': 'y' }), nothingSent), { 'mcp-param-x': 'y' });
  });

  it("a tool not known: the caller's headers pass unread, without asking for the list", async () => {
    assert.deepEqual(await marks.headersFor(callOf('unknown', { a: 1 }, { 'mcp-param-a': '1' }), nothingSent), { 'mcp-param-a': '1' });
  });

  it('not a tools/call: the caller\'s well-formed headers', async () => {
    const req = ownRequest({ 'mcp-param-a': '1' }, { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }, '2026-07-28', GATEWAY_ORIGINATED);
    assert.deepEqual(await marks.headersFor(req, nothingSent), { 'mcp-param-a': '1' });
  });
});
