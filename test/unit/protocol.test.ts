import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../../src/errors.ts';
import { OriginPolicy } from '../../src/http/origin.ts';
import { parseBody } from '../../src/protocol/jsonrpc.ts';

describe('JSON-RPC envelope', () => {
  const ok: [string, string, { kind: string; id: unknown; method: unknown }][] = [
    ['request', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', { kind: 'request', id: 1, method: 'tools/list' }],
    ['request with string id', '{"jsonrpc":"2.0","id":"a","method":"ping","params":{}}', { kind: 'request', id: 'a', method: 'ping' }],
    ['notification', '{"jsonrpc":"2.0","method":"notifications/initialized"}', { kind: 'notification', id: null, method: 'notifications/initialized' }],
    ['result', '{"jsonrpc":"2.0","id":3,"result":{}}', { kind: 'response', id: 3, method: undefined }],
    ['error', '{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"x"}}', { kind: 'response', id: 3, method: undefined }],
  ];
  for (const [name, body, want] of ok) {
    it(`reads a ${name}`, () => {
      const got = parseBody(Buffer.from(body));
      assert.equal(got.batch, false);
      if (!got.batch) assert.deepEqual({ kind: got.message.kind, id: got.message.id, method: got.message.method }, want);
    });
  }

  const bad: [string, string, string][] = [
    ['not JSON', '{"jsonrpc":', 'MCPGW_ERR_PARSE'],
    ['a string', '"hello"', 'MCPGW_ERR_INVALID_REQUEST'],
    ['null', 'null', 'MCPGW_ERR_INVALID_REQUEST'],
    ['wrong version', '{"jsonrpc":"1.0","id":1,"method":"x"}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['no version', '{"id":1,"method":"x"}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['object id', '{"jsonrpc":"2.0","id":{},"method":"x"}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['null request id', '{"jsonrpc":"2.0","id":null,"method":"x"}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['numeric method', '{"jsonrpc":"2.0","id":1,"method":5}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['empty method', '{"jsonrpc":"2.0","id":1,"method":""}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['string params', '{"jsonrpc":"2.0","id":1,"method":"x","params":"p"}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['positional params', '{"jsonrpc":"2.0","id":1,"method":"initialize","params":[]}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['fractional id', '{"jsonrpc":"2.0","id":1.5,"method":"ping"}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['id past 2^53', '{"jsonrpc":"2.0","id":1e300,"method":"ping"}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['array _meta', '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":[]}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['object progress token', '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"progressToken":{"a":1}}}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['tool named by an array', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["secret"]}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['prompt named by a number', '{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":7}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['resource read by an object', '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":{"href":"file:///x"}}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['completion of a prompt named by an array', '{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":["p"]},"argument":{"name":"a","value":""}}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['a listen subscription that is not a string', '{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":[["file:///x"]]}}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['array result', '{"jsonrpc":"2.0","id":1,"result":[]}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['error without code', '{"jsonrpc":"2.0","id":1,"error":{"message":"x"}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['neither method nor id', '{"jsonrpc":"2.0"}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['result and error', '{"jsonrpc":"2.0","id":1,"result":{},"error":{}}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['response without result', '{"jsonrpc":"2.0","id":1}', 'MCPGW_ERR_INVALID_REQUEST'],
    ['empty batch', '[]', 'MCPGW_ERR_INVALID_REQUEST'],
    ['batch with junk', '[{"jsonrpc":"2.0","method":"a"}, 1]', 'MCPGW_ERR_INVALID_REQUEST'],
    ['batch with a repeated id', '[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":1,"method":"prompts/list"}]', 'MCPGW_ERR_INVALID_REQUEST'],
  ];
  for (const [name, body, code] of bad) {
    it(`rejects ${name} with ${code}`, () => {
      assert.throws(() => parseBody(Buffer.from(body)), (e: unknown) => e instanceof GatewayError && e.code === code);
    });
  }

  it('reads a batch', () => {
    const got = parseBody('[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]');
    assert.equal(got.batch, true);
    if (got.batch) assert.deepEqual(got.messages.map((m) => m.kind), ['request', 'notification']);
  });
});

describe('Origin allow-list', () => {
  const policy = new OriginPolicy(['http://localhost:*', 'https://app.example.com']);
  const cases: [string | undefined, boolean][] = [
    [undefined, true],
    ['http://localhost:6274', true],
    ['http://localhost', true],
    ['http://LOCALHOST:3000', true],
    ['https://app.example.com', true],
    ['https://app.example.com:8443', false],
    ['http://localhost.evil.com', false],
    ['http://localhost:80abc', false],
    ['https://evil.example', false],
    ['null', false],
  ];
  for (const [origin, allowed] of cases) {
    it(`${allowed ? 'allows' : 'rejects'} ${origin ?? 'no Origin'}`, () => assert.equal(policy.allows(origin), allowed));
  }
  it('allows everything with "*"', () => assert.equal(new OriginPolicy(['*']).allows('https://anything'), true));
});
