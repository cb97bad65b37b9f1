import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { demoServerPath } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { INIT, JSON_AND_SSE } from '../helpers/raw.ts';

/**
 * The server name in the URL is the caller's to choose. An unknown one — whatever it holds — is
 * refused with a JSON-RPC error before anything is built from it: no WWW-Authenticate challenge,
 * no log or audit field, no 500; and the replica keeps serving.
 */

/** Path segments as sent on the wire (no client-side normalization: `..` stays `..`). */
const HOSTILE: [string, string][] = [
  ['quote and comma (a header parameter injection)', 'a%22%2C%20error%3D%22x'],
  ['CR LF (a header injection)', 'a%0d%0aX-Injected:%20yes'],
  ['a NUL', 'a%00b'],
  ['10 000 characters', 'x'.repeat(10_000)],
  ['unicode', '%E2%98%83%F0%9F%92%A9'],
  ['a dot-dot segment', '..'],
  ['a percent-encoded dot-dot segment', '%2e%2e'],
  ['a backslash', 'a%5Cb'],
  ['a prototype member', 'constructor'],
  ['__proto__', '__proto__'],
  ['toString', 'toString'],
  ['a known name with a space after it', 'api%20'],
];

/** Every route whose path names a server; `{}` is where the name goes. */
const ROUTES: [string, string, string | undefined][] = [
  ['POST', '/mcp/{}', JSON.stringify(INIT)],
  ['GET', '/mcp/{}', undefined],
  ['DELETE', '/mcp/{}', undefined],
  ['PUT', '/mcp/{}', undefined],
  ['GET', '/mcp/{}/sse', undefined],
  ['POST', '/mcp/{}/messages?sessionId=abc', JSON.stringify(INIT)],
  ['GET', '/.well-known/oauth-protected-resource/mcp/{}', undefined],
];

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One request with the path exactly as given (fetch would normalize it). */
function send(base: string, method: string, path: string, body: string | undefined, headers: Record<string, string> = {}): Promise<Answer> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path, headers: { accept: JSON_AND_SSE, ...(body ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A logger whose lines the test reads. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: () => { level: number; msg: string }[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return {
    logger: createLogger('debug', sink),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { level: number; msg: string }),
  };
}

for (const mode of ['none', 'jwt'] as const) {
  describe(`hostile server names in the URL (auth ${mode})`, () => {
    let issuer: TestIssuer | undefined;
    let gw: Gateway;
    let auditFile: string;
    let log: ReturnType<typeof capturingLogger>;
    let token: Record<string, string> = {};
    before(async () => {
      auditFile = join(mkdtempSync(join(tmpdir(), 'mcpgw-names-')), 'audit.log');
      log = capturingLogger();
      const auth = mode === 'jwt' ? { mode, issuer: (issuer = await startTestIssuer()).issuer, jwksUri: issuer.jwksUri, audience: 'mcp-test', scopes: ['mcp'] } : { mode };
      gw = await startGateway(
        {
          auth,
          audit: { enabled: true, destination: auditFile },
          servers: { api: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] } },
        },
        { logger: log.logger },
      );
      if (issuer) token = { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: 'mcp-test', scope: 'mcp' })}` };
    });
    after(async () => {
      await gw?.close();
      await issuer?.close();
    });

    for (const [what, name] of HOSTILE) {
      for (const [method, route, body] of ROUTES) {
        for (const withToken of mode === 'jwt' ? [false, true] : [false]) {
          const path = route.replace('{}', name);
          it(`${what}: ${method} ${route}${withToken ? ' with a token' : ''} → a JSON-RPC 404 from the error table`, async () => {
            const res = await send(gw.url, method, path, body, withToken ? token : {});
            assert.equal(res.status, 404, res.text.slice(0, 300));
            const parsed = JSON.parse(res.text) as { jsonrpc: string; error: { code: number; data: { code: string } } };
            assert.equal(parsed.jsonrpc, '2.0');
            const expected: Record<string, number> = { MCPGW_ERR_UNKNOWN_SERVER: -31009, MCPGW_ERR_NOT_FOUND: -31023 };
            assert.ok(parsed.error.data.code in expected, parsed.error.data.code);
            assert.equal(parsed.error.code, expected[parsed.error.data.code]);
            assert.equal(res.headers['www-authenticate'], undefined);
            assert.equal(res.headers['x-injected'], undefined);
          });
        }
      }
    }

    it('nothing was built from those names: no error logged, no audit line, no metric series', async () => {
      const errors = log.lines().filter((l) => l.level >= 50);
      assert.deepEqual(errors, []);
      gw.audit?.flush();
      const audit = readFileSync(auditFile, 'utf8');
      assert.equal(audit, '', 'an audit line for a server that does not exist');
      const metrics = await gw.metrics.registry.metrics();
      for (const needle of ['error=', '\\"', 'constructor', 'X-Injected', '☃']) assert.ok(!metrics.includes(needle), `metrics mention ${needle}`);
      const refused = await gw.metrics.registry.getSingleMetric('mcp_errors_total')!.get();
      assert.ok(refused.values.some((v) => v.labels.error_type === 'MCPGW_ERR_UNKNOWN_SERVER' && v.value > 0), 'refusals are still counted');
    });

    it('the replica keeps serving the real server', async () => {
      const res = await send(gw.url, 'POST', '/mcp/api', JSON.stringify(INIT), token);
      assert.equal(res.status, 200, res.text);
      assert.ok(res.headers['mcp-session-id']);
    });
  });
}
