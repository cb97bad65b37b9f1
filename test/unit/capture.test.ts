import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { it } from 'node:test';
import { captureResult } from '../../src/upstream/capture.ts';
import type { UpstreamResponse } from '../../src/upstream/types.ts';

function chunked(text: string, size: number): Readable {
  const chunks: Buffer[] = [];
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
  return Readable.from(chunks);
}

async function run(res: UpstreamResponse, id: string | number, maxBytes = 1 << 20): Promise<{ passed: string; result: unknown }> {
  let result: unknown = 'not called';
  const done = new Promise<void>((resolve) => {
    res = captureResult(res, id, maxBytes, (r) => {
      result = r;
      resolve();
    });
  });
  let passed = '';
  if (res.body && typeof res.body !== 'string') for await (const c of res.body) passed += String(c);
  else passed = String(res.body);
  await done;
  return { passed, result };
}

const answer = JSON.stringify({ jsonrpc: '2.0', id: 4, result: { contents: [{ uri: 'x', text: 'héllo ✓' }], ttlMs: 5 } });

it('reads the result out of a JSON answer that passes through unchanged', async () => {
  for (const size of [1, 3, 1000]) {
    const out = await run({ status: 200, headers: { 'content-type': 'application/json' }, body: chunked(answer, size) }, 4);
    assert.equal(out.passed, answer);
    assert.deepEqual(out.result, { contents: [{ uri: 'x', text: 'héllo ✓' }], ttlMs: 5 });
  }
  const stdio = await run({ status: 200, headers: { 'content-type': 'application/json' }, body: answer }, 4);
  assert.deepEqual(stdio.result, { contents: [{ uri: 'x', text: 'héllo ✓' }], ttlMs: 5 });
});

it('takes the response event of an SSE answer, after notifications and across chunk boundaries', async () => {
  const sse = [
    'id: a\nevent: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1,"result":{"x":1}}}\n\n',
    'event: message\ndata: {"jsonrpc":"2.0","id":9,"method":"roots/list"}\n\n',
    `id: b\r\nevent: message\r\ndata: ${answer}\r\n\r\n`,
  ].join('');
  for (const size of [1, 7, 64, sse.length]) {
    const out = await run({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: chunked(sse, size) }, 4);
    assert.equal(out.passed, sse, `chunk size ${size}`);
    assert.deepEqual(out.result, { contents: [{ uri: 'x', text: 'héllo ✓' }], ttlMs: 5 }, `chunk size ${size}`);
  }
});

it('reports nothing for errors, other ids, other statuses, oversized or cut-off answers', async () => {
  const error = JSON.stringify({ jsonrpc: '2.0', id: 4, error: { code: -1, message: 'no' } });
  assert.equal((await run({ status: 200, headers: { 'content-type': 'application/json' }, body: chunked(error, 5) }, 4)).result, undefined);
  assert.equal((await run({ status: 200, headers: { 'content-type': 'application/json' }, body: chunked(answer, 5) }, 5)).result, undefined, 'another id');
  assert.equal((await run({ status: 200, headers: { 'content-type': 'application/json' }, body: chunked(answer, 5) }, '4')).result, undefined, 'ids are typed');
  assert.equal((await run({ status: 503, headers: { 'content-type': 'application/json' }, body: chunked(answer, 5) }, 4)).result, undefined);
  const big = await run({ status: 200, headers: { 'content-type': 'application/json' }, body: chunked(answer, 5) }, 4, 20);
  assert.equal(big.passed, answer, 'still passed through');
  assert.equal(big.result, undefined);

  let result: unknown = 'not called';
  const body = new Readable({ read() {} });
  const res = captureResult({ status: 200, headers: { 'content-type': 'application/json' }, body }, 4, 1 << 20, (r) => (result = r));
  body.push(answer.slice(0, 10));
  (res.body as Readable).destroy();
  await new Promise((r) => setImmediate(r));
  assert.equal(result, undefined, 'a client that left: nothing to keep');
  assert.equal(body.destroyed, true, 'and the upstream answer is released');
});
