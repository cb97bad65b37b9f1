import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { it } from 'node:test';
import { guardRequest, guardResponse } from '../../src/auth/guard.ts';
import type { Principal } from '../../src/auth/principal.ts';
import { loadConfig } from '../../src/config/load.ts';
import { parseBody, type Envelope } from '../../src/protocol/jsonrpc.ts';
import { wireBody } from '../../src/protocol/wire.ts';

const { config } = loadConfig({
  document: {
    auth: { mode: 'jwt', issuer: 'i', jwksUri: 'http://i/jwks', audience: 'a' },
    servers: { s: { upstreams: [{ url: 'http://u/mcp' }], auth: { tools: { 'secret_*': { scopes: ['admin'] } } } } },
  },
  env: {},
});
const policy = config.servers.s!.policy;
const caller: Principal = { id: 'x', kind: 'user', issuer: 'i', subject: 'u', scopes: new Set(), claims: {} };

function plan(body: unknown) {
  const buf = Buffer.from(JSON.stringify(body));
  const incoming = parseBody(buf);
  const messages: readonly Envelope[] = incoming.batch ? incoming.messages : [incoming.message];
  return guardRequest(policy, caller, messages)!;
}

it('rewrites only the SSE event answering the list, across arbitrary chunk boundaries', async () => {
  const p = plan({ jsonrpc: '2.0', id: 7, method: 'tools/list' });
  const note = 'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"secret_x":1}}\n\n';
  const answer = `id: ev-9\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 7, result: { tools: [{ name: 'echo' }, { name: 'secret_y' }], nextCursor: 'c' } })}\n\n`;
  const after = 'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"data":"secret_z"}}\n\n';
  const text = note + answer + after;
  for (const size of [1, 7, 64, text.length]) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < text.length; i += size) chunks.push(Buffer.from(text.slice(i, i + size)));
    const res = await guardResponse({ status: 200, headers: { 'content-type': 'text/event-stream', 'content-length': '1' }, body: Readable.from(chunks) }, p);
    assert.equal(res.headers['content-length'], undefined);
    let out = '';
    for await (const c of res.body as Readable) out += String(c);
    const expected = `id: ev-9\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 7, result: { tools: [{ name: 'echo' }], nextCursor: 'c' } })}\n\n`;
    assert.equal(out, note + expected + after, `chunk size ${size}`);
  }
});

it('leaves requests that need no guarding alone (undefined plan)', () => {
  const buf = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}');
  assert.equal(guardRequest(policy, caller, [parseBody(buf)].map((i) => (i.batch ? i.messages[0]! : i.message))), undefined);
});

it('swaps a hidden name in a batch and puts it back, JSON-escaped, in the answer', async () => {
  const p = plan([{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'secret_"q"', arguments: {} } }, { jsonrpc: '2.0', id: 2, method: 'tools/list' }]);
  const sent = JSON.parse(wireBody(p.messages, true).toString()) as { params?: { name: string } }[];
  assert.match(sent[0]!.params!.name, /^mcpgw-hidden-[0-9a-f]{18}$/);
  assert.deepEqual(p.hidden, ['secret_"q"']);
  const fake = sent[0]!.params!.name;
  const upstream = JSON.stringify([
    { jsonrpc: '2.0', id: 1, error: { code: -32602, message: `Tool ${fake} not found` } },
    { jsonrpc: '2.0', id: 2, result: { tools: [{ name: 'secret_a' }, { name: 'b' }] } },
  ]);
  const res = await guardResponse({ status: 200, headers: { 'content-type': 'application/json' }, body: upstream }, p);
  assert.deepEqual(JSON.parse(res.body as string), [
    { jsonrpc: '2.0', id: 1, error: { code: -32602, message: 'Tool secret_"q" not found' } },
    { jsonrpc: '2.0', id: 2, result: { tools: [{ name: 'b' }] } },
  ]);
});

/**
 * A list answer is known by its id, and once every list is answered the rest of the stream
 * passes unfiltered: a message whose id only looks like the request's (null for "null", true
 * for "true") must not count as the answer.
 */
it('an id that only looks like a list request id is not its answer: the real answer is still filtered', async () => {
  for (const [requestId, lookalike] of [
    ['null', null],
    ['true', true],
    ['1', 1],
  ] as const) {
    const p = plan({ jsonrpc: '2.0', id: requestId, method: 'tools/list' });
    const events = [
      { jsonrpc: '2.0', id: lookalike, error: { code: -32600, message: 'Invalid Request' } },
      { jsonrpc: '2.0', id: requestId, result: { tools: [{ name: 'echo' }, { name: 'secret_y' }] } },
    ].map((m) => `event: message\ndata: ${JSON.stringify(m)}\n\n`);
    const res = await guardResponse({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: Readable.from(events.map((e) => Buffer.from(e))) }, p);
    let out = '';
    for await (const c of res.body as Readable) out += String(c);
    assert.doesNotMatch(out, /secret_y/, `request id ${JSON.stringify(requestId)}, then a message with id ${JSON.stringify(lookalike)}`);
  }
});
