import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { ERRORS, type GatewayError } from '../../src/errors.ts';
import { ANSWER_ERROR_TYPES, ANSWER_KEEP_BYTES, readJsonAnswer, responseFailure, rpcErrorType, textFailure, type AnswerSink } from '../../src/protocol/answers.ts';

const error = (code: unknown, data?: unknown) => JSON.stringify({ jsonrpc: '2.0', id: 1, error: { code, message: 'm', ...(data === undefined ? {} : { data }) } });
const result = (r: unknown) => JSON.stringify({ jsonrpc: '2.0', id: 1, result: r });

/** A sink that records what it is told. */
function recorder(): AnswerSink & { failures: string[]; settledWith: (string | undefined)[] } {
  const failures: string[] = [];
  const settledWith: (string | undefined)[] = [];
  return { failures, settledWith, failed: (t) => void failures.push(t), settled: (f) => void settledWith.push(f) };
}

describe('what an answer says, as accounting reads it', () => {
  const cases: [string, string, string | undefined][] = [
    ['a result', result({ content: [{ type: 'text', text: 'ok' }] }), undefined],
    ['a result whose text says "error"', result({ content: [{ type: 'text', text: 'error' }], structuredContent: { error: 'none' } }), undefined],
    ['isError: true', result({ content: [{ type: 'text', text: 'boom' }], isError: true }), 'tool_error'],
    ['isError: false', result({ content: [], isError: false }), undefined],
    ['isError nested deeper is no tool error', result({ structuredContent: { isError: true } }), undefined],
    ['isError pretty-printed', JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [], isError: true } }, null, 2), 'tool_error'],
    ['parse error', error(-32700), 'rpc_parse_error'],
    ['invalid request', error(-32600), 'rpc_invalid_request'],
    ['method not found', error(-32601), 'rpc_method_not_found'],
    ['unknown tool (invalid params)', error(-32602), 'rpc_invalid_params'],
    ['internal error', error(-32603), 'rpc_internal_error'],
    ['MCP resource not found', error(-32002), 'rpc_resource_not_found'],
    ['MCP URL elicitation required', error(-32042), 'rpc_url_elicitation_required'],
    ['2026-07-28 header mismatch', error(-32020), 'rpc_header_mismatch'],
    ['2026-07-28 missing capability', error(-32021), 'rpc_missing_capability'],
    ['2026-07-28 unsupported version', error(-32022), 'rpc_unsupported_version'],
    ['an implementation-defined server error', error(-32050), 'rpc_server_error'],
    ['a code of the application', error(42), 'rpc_other'],
    ['a code that is no number', error('E_BAD'), 'rpc_other'],
    ['an error that is no object', JSON.stringify({ jsonrpc: '2.0', id: 1, error: 'bad' }), 'rpc_other'],
    ['a gateway code in error.data.code', error(-32006, { code: 'MCPGW_ERR_UPSTREAM_TIMEOUT' }), 'MCPGW_ERR_UPSTREAM_TIMEOUT'],
    ['a made-up gateway code is not taken', error(-32006, { code: 'MCPGW_ERR_NOPE' }), 'rpc_server_error'],
    ['a made-up gateway code from the prototype is not taken', error(-32006, { code: 'constructor' }), 'rpc_server_error'],
    ['a batch: its first failure', JSON.stringify([JSON.parse(result({})), JSON.parse(result({ isError: true })), JSON.parse(error(-32601))]), 'tool_error'],
    ['a batch of successes', JSON.stringify([JSON.parse(result({})), JSON.parse(result({ content: [] }))]), undefined],
    ['a request is no answer', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { error: 1 } }), undefined],
    ['a notification at level "error"', JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'error', data: 'x' } }), undefined],
    ['not JSON', 'upstream said "error" in plain text', undefined],
    ['JSON null', 'null', undefined],
  ];
  for (const [name, body, want] of cases) {
    it(`${name} → ${want ?? 'success'}`, () => {
      assert.equal(textFailure(body), want);
    });
  }

  it('every error_type is bounded: the gateway codes plus a closed list', () => {
    for (const code of [-32700, -32600, -32601, -32602, -32603, -32000, -32099, -32100, 0, 1, -1, 2 ** 40, Number.NaN]) {
      const type = rpcErrorType({ code });
      assert.ok((ANSWER_ERROR_TYPES as readonly string[]).includes(type), `${code} → ${type}`);
    }
    for (const code of Object.keys(ERRORS)) assert.equal(rpcErrorType({ code: -32000, data: { code } }), code);
  });

  it('responseFailure reads parsed messages the same way', () => {
    assert.equal(responseFailure({ id: 1, result: { isError: true } }), 'tool_error');
    assert.equal(responseFailure({ id: 1, error: { code: -32601 } }), 'rpc_method_not_found');
    assert.equal(responseFailure({ id: 1, result: null }), undefined);
    assert.equal(responseFailure(undefined), undefined);
  });
});

describe('readJsonAnswer: a JSON answer passes byte for byte and is judged when it ends', () => {
  /** Reads `chunks` as an upstream body: what the client would be sent, and what the sink was told. */
  const run = async (chunks: (string | Buffer)[]) => {
    const sink = recorder();
    const answer = await readJsonAnswer(Readable.from(chunks.map((c) => Buffer.from(c))), sink);
    const passed = Buffer.isBuffer(answer) ? answer.toString('utf8') : await text(answer);
    return { passed, failures: sink.failures, whole: Buffer.isBuffer(answer) };
  };

  it('a small success: read whole, nothing said, every byte through', async () => {
    const body = result({ content: [{ type: 'text', text: 'hello "error"' }] });
    const { passed, failures, whole } = await run([body.slice(0, 10), body.slice(10)]);
    assert.equal(passed, body);
    assert.ok(whole, 'sent as bytes, no stream built');
    assert.deepEqual(failures, []);
  });

  it('an error cut across chunks', async () => {
    const body = error(-32602);
    const at = body.indexOf('"error"') + 3;
    const { passed, failures } = await run([body.slice(0, at), body.slice(at)]);
    assert.equal(passed, body);
    assert.deepEqual(failures, ['rpc_invalid_params']);
  });

  it('a tool error', async () => {
    assert.deepEqual((await run([result({ content: [], isError: true })])).failures, ['tool_error']);
  });

  it(`larger than ${ANSWER_KEEP_BYTES} bytes: streamed on, judged by the isError marker, even cut in two`, async () => {
    const big = 'x'.repeat(ANSWER_KEEP_BYTES);
    const body = result({ content: [{ type: 'text', text: big }], isError: true });
    const at = body.indexOf('"isError"') + 4;
    const { passed, failures, whole } = await run([body.slice(0, 1000), body.slice(1000, at), body.slice(at)]);
    assert.equal(whole, false, 'not held whole');
    assert.equal(passed, body);
    assert.deepEqual(failures, ['tool_error']);
    const fine = result({ content: [{ type: 'text', text: big }] });
    const ok = await run([fine.slice(0, 70_000), fine.slice(70_000)]);
    assert.equal(ok.passed, fine);
    assert.deepEqual(ok.failures, []);
  });

  it('an answer the upstream broke off is a lost stream', async () => {
    const body = new Readable({ read() {} });
    const reading = Promise.resolve(readJsonAnswer(body, recorder()));
    body.push('{"jsonrpc":"2.0","id":1,"res');
    body.destroy(new Error('socket hang up'));
    await assert.rejects(reading, (err: GatewayError) => err.code === 'MCPGW_ERR_STREAM_LOST');
    const closed = new Readable({ read() {} });
    const cut = Promise.resolve(readJsonAnswer(closed, recorder()));
    closed.destroy();
    await assert.rejects(cut, (err: GatewayError) => err.code === 'MCPGW_ERR_STREAM_LOST');
  });

  it('a large answer the upstream breaks off while it streams is a lost stream', async () => {
    const sink = recorder();
    const body = new Readable({ read() {} });
    const reading = readJsonAnswer(body, sink);
    body.push(Buffer.alloc(ANSWER_KEEP_BYTES + 1, 'x'));
    const out = (await reading) as Readable;
    out.resume();
    out.on('error', () => {});
    body.destroy(new Error('socket hang up'));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(sink.failures, ['MCPGW_ERR_STREAM_LOST']);
  });

  it('an answer whose bytes have all come (its content-length buffered) is taken at once, and its end still read', async () => {
    for (const answer of [result({ content: [{ type: 'text', text: 'hello' }] }), error(-32601)]) {
      const sink = recorder();
      const body = new Readable({ read() {} });
      body.push(answer.slice(0, 12));
      body.push(answer.slice(12));
      body.push(null);
      let ended = false;
      body.on('end', () => (ended = true));
      const taken = readJsonAnswer(body, sink, Buffer.byteLength(answer));
      assert.ok(Buffer.isBuffer(taken), 'the bytes, not a promise');
      assert.equal(taken.toString('utf8'), answer);
      assert.deepEqual(sink.failures, answer.includes('"error"') ? ['rpc_method_not_found'] : []);
      await new Promise((r) => setImmediate(r));
      assert.ok(ended, 'its end was read (what follows the body sees it end)');
    }
  });

  it('an answer with fewer bytes come than its content-length (or none said) is read as it comes', async () => {
    const answer = result({ content: [{ type: 'text', text: 'hello' }] });
    const body = new Readable({ read() {} });
    body.push(answer.slice(0, 12));
    const reading = readJsonAnswer(body, recorder(), Buffer.byteLength(answer));
    assert.ok(reading instanceof Promise, 'waits for the rest');
    body.push(answer.slice(12));
    body.push(null);
    assert.equal(((await reading) as Buffer).toString('utf8'), answer);
    const unsaid = new Readable({ read() {} });
    unsaid.push(answer);
    unsaid.push(null);
    const read = readJsonAnswer(unsaid, recorder());
    assert.ok(read instanceof Promise, 'no content-length: read to its end');
    assert.equal(((await read) as Buffer).toString('utf8'), answer);
  });

  it('a large answer the client leaves says nothing (the response accounts for it) and releases the upstream', async () => {
    const sink = recorder();
    const body = new Readable({ read() {} });
    const reading = readJsonAnswer(body, sink);
    body.push(Buffer.alloc(ANSWER_KEEP_BYTES + 1, 'x'));
    const out = (await reading) as Readable;
    out.resume();
    out.destroy();
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(sink.failures, []);
    assert.ok(body.destroyed, 'the upstream answer was released');
  });
});
