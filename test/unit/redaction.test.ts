import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { it } from 'node:test';
import { publicUrl, redactArgs, redactUrl, redactUrls } from '../../src/config/redact.ts';
import { AuditLog } from '../../src/ops/audit.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { envelope } from '../../src/protocol/jsonrpc.ts';

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

it('the operational log redacts URLs in any field: userinfo, query, fragment', () => {
  const out = capture();
  const log = createLogger('trace', out.stream);
  log.warn({ replica: 'http://user:pw-1@h:1/mcp?api_key=k-3', stderr: 'connecting to postgres://app:pw-2@db/x?sslpassword=k-4 …' }, 'x');
  const text = out.text();
  for (const s of ['pw-1', 'pw-2', 'k-3', 'k-4']) assert.ok(!text.includes(s), `${s} leaked: ${text}`);
  assert.match(text, /connecting to postgres:\/\/app:\[redacted\]@db\/x\?sslpassword=\[redacted\] …/);
});

it('URLs: the password (or a lone user, often a token), query values, fragment and token-like path segments are hidden', () => {
  const cases: [string, string][] = [
    ['http://127.0.0.1:3001/mcp', 'http://127.0.0.1:3001/mcp'],
    ['HTTP://Host:80/mcp', 'HTTP://Host:80/mcp'], // nothing hidden: as written
    ['http://user:pw@h:1/mcp?api_key=K&x=1&flag', 'http://user:[redacted]@h:1/mcp?api_key=[redacted]&x=[redacted]&[redacted]'],
    ['redis://:pw@redis:6379/0', 'redis://:[redacted]@redis:6379/0'],
    ['https://ghp_0123456789@github.com/o/r', 'https://[redacted]@github.com/o/r'],
    ['https://idp/cb#access_token=T', 'https://idp/cb#[redacted]'],
    ['https://actions.zapier.com/mcp/sk-ak-0123456789abcdefghij/sse', 'https://actions.zapier.com/mcp/[redacted]/sse'],
    ['https://h/v1/server-2024-11-05.js', 'https://h/v1/server-2024-11-05.js'],
    // Unparseable (a raw "/" in the password): everything up to the last "@" is userinfo.
    ['redis://u:pa/ss@host:1/0?x=1', 'redis://[redacted]@host:1/0?x=[redacted]'],
  ];
  for (const [url, shown] of cases) assert.equal(redactUrl(url), shown, url);
  assert.equal(redactUrls('GET http://u:p@h/x?q=1 then https://ok/'), 'GET http://u:[redacted]@h/x?q=[redacted] then https://ok/');
  assert.equal(publicUrl('https://user:pw@API.example.com:443/v1/mcp?api_key=K#f'), 'https://api.example.com/v1/mcp');
});

it('stdio arguments: secret-named flags and their values, NAME=value, token-like values are hidden', () => {
  const cases: [string[], string[]][] = [
    [['x.js', '--token=S1', '--api-key', 'S2'], ['x.js', '--token=[redacted]', '--api-key', '[redacted]']],
    [['-password', 'S3', '--client-secret=S4', '--auth', '--verbose'], ['-password', '[redacted]', '--client-secret=[redacted]', '--auth', '--verbose']],
    [['--port', '8080', '--log-level=debug', 'dir=/tmp'], ['--port', '8080', '--log-level=debug', 'dir=/tmp']],
    [['-e', 'GITHUB_PERSONAL_ACCESS_TOKEN=S5', 'SOME_VAR=S6', 'x=sk-0123456789abcdefghijK'], ['-e', 'GITHUB_PERSONAL_ACCESS_TOKEN=[redacted]', 'SOME_VAR=[redacted]', 'x=[redacted]']],
    [['@modelcontextprotocol/server-github', 'ghp_0123456789abcdefghijklmn', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIzNDU2Nzg5'], ['@modelcontextprotocol/server-github', '[redacted]', '[redacted]']],
    [['/srv/mcp/a1b2c3d4e5f6a7b8c9d0e1', 'dist/server-v2-0123456789.js', '--db', 'postgres://app:S7@db/x'], ['/srv/mcp/a1b2c3d4e5f6a7b8c9d0e1', 'dist/server-v2-0123456789.js', '--db', 'postgres://app:[redacted]@db/x']],
  ];
  for (const [args, shown] of cases) assert.deepEqual(redactArgs(args), shown, args.join(' '));
});

it('the audit log redacts configured keys at any depth and truncates large params', () => {
  const lines: string[] = [];
  const audit = new AuditLog({ enabled: true, destination: 'stdout', redactKeys: ['password', 'api_key'], maxParamsBytes: 200 }, { write: (l: string) => lines.push(l) });
  const base = { requestId: 'r1', principal: undefined, server: 's', httpMethod: 'POST', session: undefined, status: 200, error: undefined, hidden: undefined, latencyMs: 1.23456 };
  audit.record({
    ...base,
    messages: [
      envelope({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 't', arguments: { list: [{ PassWord: 'p' }, { 'api-key': 'k' }], keep: 1 } } }),
      envelope({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'big', arguments: { blob: 'x'.repeat(500) } } }),
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
      envelope({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: long } }),
      envelope({ jsonrpc: '2.0', id: 2, method: 'm'.repeat(1_000_000) }),
    ],
  });
  const text = lines.join('');
  assert.ok(text.length < 10_000, `${text.length} characters of audit for two messages`);
  const [a, b] = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.match(String(a!.name), /^n{256}…\[1000000 characters\]$/);
  assert.equal(a!.outcome, 'denied', 'the hidden name is still recognised');
  assert.match(String(b!.method), /^m{256}…\[1000000 characters\]$/);
});
