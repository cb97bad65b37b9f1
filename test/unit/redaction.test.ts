import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { it } from 'node:test';
import { AuditLog } from '../../src/ops/audit.ts';
import { createLogger } from '../../src/ops/logger.ts';

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

it('the operational log redacts credentials wherever they sit', () => {
  const out = capture();
  const log = createLogger('trace', out.stream);
  log.info({ req: { headers: { authorization: 'Bearer tok-1', cookie: 'c-1', 'x-api-key': 'k-1' } } }, 'request');
  log.info({ headers: { authorization: 'Bearer tok-2' }, upstream: { authorization: 'Bearer tok-3', token: 'tok-4' } }, 'headers');
  log.info({ body: { access_token: 'tok-5', client_secret: 'sec-1', clientSecret: 'sec-2', password: 'pw-1', secret: 'sec-3', api_key: 'k-2' } }, 'oauth');
  log.info({ upstream: { credentials: { value: 'Bearer tok-6' } } }, 'config');
  const text = out.text();
  for (const s of ['tok-1', 'c-1', 'k-1', 'tok-2', 'tok-3', 'tok-4', 'tok-5', 'sec-1', 'sec-2', 'pw-1', 'sec-3', 'k-2', 'tok-6']) assert.ok(!text.includes(s), `${s} leaked: ${text}`);
  assert.match(text, /\[redacted\]/);
});

it('the audit log redacts configured keys at any depth and truncates large params', () => {
  const lines: string[] = [];
  const audit = new AuditLog({ enabled: true, destination: 'stdout', redactKeys: ['password', 'api_key'], maxParamsBytes: 200 }, { write: (l: string) => lines.push(l) });
  const base = { requestId: 'r1', principal: undefined, server: 's', httpMethod: 'POST', session: undefined, status: 200, error: undefined, hidden: undefined, latencyMs: 1.23456 };
  audit.record({
    ...base,
    messages: [
      { kind: 'request', id: 1, method: 'tools/call', params: { name: 't', arguments: { list: [{ PassWord: 'p' }, { 'api-key': 'k' }], keep: 1 } } },
      { kind: 'request', id: 2, method: 'tools/call', params: { name: 'big', arguments: { blob: 'x'.repeat(500) } } },
    ],
  });
  const [a, b] = lines.join('').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(a!.params, { name: 't', arguments: { list: [{ PassWord: '[redacted]' }, { 'api-key': '[redacted]' }], keep: 1 } });
  assert.equal(a!.latencyMs, 1.235);
  assert.equal(a!.outcome, 'ok');
  assert.match(String(b!.params), /^\[truncated: \d+ bytes\]$/);
  assert.equal(b!.name, 'big');
});

it('the audit log cuts a method or an item name the caller made longer than any real one', () => {
  const lines: string[] = [];
  const audit = new AuditLog({ enabled: true, destination: 'stdout', redactKeys: [], maxParamsBytes: 200 }, { write: (l: string) => lines.push(l) });
  const base = { requestId: 'r1', principal: undefined, server: 's', httpMethod: 'POST', session: undefined, status: 200, error: undefined, latencyMs: 1 };
  const long = 'n'.repeat(1_000_000);
  audit.record({
    ...base,
    hidden: [long],
    messages: [
      { kind: 'request', id: 1, method: 'tools/call', params: { name: long } },
      { kind: 'request', id: 2, method: 'm'.repeat(1_000_000), params: undefined },
    ],
  });
  const text = lines.join('');
  assert.ok(text.length < 10_000, `${text.length} characters of audit for two messages`);
  const [a, b] = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.match(String(a!.name), /^n{256}…\[1000000 characters\]$/);
  assert.equal(a!.outcome, 'denied', 'the hidden name is still recognised');
  assert.match(String(b!.method), /^m{256}…\[1000000 characters\]$/);
});
