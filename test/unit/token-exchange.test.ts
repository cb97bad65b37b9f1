import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CallerTokens, stampCallerToken, TokenExchanger, type CallerToken } from '../../src/upstream/token-exchange.ts';
import { UpstreamCredentials } from '../../src/upstream/credentials.ts';
import type { TokenExchangeConfig, UpstreamCredentialsConfig } from '../../src/config/types.ts';
import { GatewayError } from '../../src/errors.ts';

/** A token endpoint on loopback whose answer each test sets; it records every form it gets. */
describe('token exchange (RFC 8693): cache, sharing, failures', () => {
  let server: Server;
  let url: string;
  const forms: { form: URLSearchParams; authorization: string | undefined }[] = [];
  let answer: (form: URLSearchParams) => { status: number; body: string };

  before(async () => {
    server = createServer((req: IncomingMessage, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        const form = new URLSearchParams(text);
        forms.push({ form, authorization: req.headers.authorization });
        const { status, body } = answer(form);
        res.writeHead(status, { 'content-type': 'application/json' }).end(body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    forms.length = 0;
    answer = (form) => ({ status: 200, body: JSON.stringify({ access_token: `for-${form.get('subject_token')}-${forms.length}`, token_type: 'Bearer', expires_in: 300 }) });
  });

  const config = (over: Partial<TokenExchangeConfig> = {}): TokenExchangeConfig => ({
    tokenUrl: url, clientId: 'gw', clientSecret: 'se:cret', clientAuth: 'client_secret_basic', scope: 'files', resource: 'https://up/mcp', audience: undefined, timeoutMs: 2_000, cacheSize: 100, ...over,
  });
  const caller = (token: string, principal = `p-${token}`, ttlMs = 3_600_000): CallerToken => ({ token, principal, expiresAt: Date.now() + ttlMs });
  const code = (err: unknown) => (err instanceof GatewayError ? err.code : String(err));

  it('asks with the RFC 8693 form, as the gateway client (Basic, form-encoded first)', async () => {
    const x = new TokenExchanger(config(), 'Bearer ');
    assert.equal(await x.value(caller('t1')), 'Bearer for-t1-1');
    const { form, authorization } = forms[0]!;
    assert.deepEqual(Object.fromEntries(form), {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: 't1',
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      resource: 'https://up/mcp',
      scope: 'files',
    });
    assert.equal(authorization, `Basic ${Buffer.from('gw:se%3Acret').toString('base64')}`);
    const posted = new TokenExchanger(config({ clientAuth: 'client_secret_post', resource: undefined, audience: 'up' }), 'Bearer ');
    await posted.value(caller('t2'));
    assert.equal(forms[1]!.authorization, undefined);
    assert.equal(forms[1]!.form.get('client_id'), 'gw');
    assert.equal(forms[1]!.form.get('client_secret'), 'se:cret');
    assert.equal(forms[1]!.form.get('audience'), 'up');
    assert.equal(forms[1]!.form.get('resource'), null);
  });

  it('concurrent requests with one token share one exchange; another token gets its own', async () => {
    const x = new TokenExchanger(config(), '');
    const values = await Promise.all([...Array.from({ length: 5 }, () => x.value(caller('a'))), x.value(caller('b'))]);
    assert.equal(forms.length, 2);
    assert.equal(new Set(values.slice(0, 5)).size, 1);
    assert.notEqual(values[0], values[5]);
    assert.equal(x.value(caller('a')), values[0], 'a hit is synchronous');
  });

  it('holds at most cacheSize tokens, dropping the least recently used', async () => {
    const x = new TokenExchanger(config({ cacheSize: 2 }), '');
    await x.value(caller('t1'));
    await x.value(caller('t2'));
    x.value(caller('t1')); // t1 is now the most recently used
    await x.value(caller('t3'));
    assert.equal(x.size, 2);
    assert.equal(forms.length, 3);
    assert.equal(typeof x.value(caller('t1')), 'string', 't1 kept');
    await x.value(caller('t2'));
    assert.equal(forms.length, 4, 't2 was dropped and is exchanged again');
  });

  it("never keeps a token past the caller's own; invalidate drops it", async () => {
    const x = new TokenExchanger(config(), '');
    const short = caller('s', 'p', 50);
    await x.value(short);
    await sleep(80);
    await x.value({ ...short, expiresAt: Date.now() + 60_000 });
    assert.equal(forms.length, 2);
    x.invalidate(short);
    await x.value(short);
    assert.equal(forms.length, 3);
  });

  it('maps answers to DENIED (the caller may not) or FAILED (the endpoint or the gateway client), caching neither', async () => {
    const table: [string, number, string, string][] = [
      ['invalid_grant', 400, JSON.stringify({ error: 'invalid_grant' }), 'MCPGW_ERR_TOKEN_EXCHANGE_DENIED'],
      ['access_denied', 403, JSON.stringify({ error: 'access_denied' }), 'MCPGW_ERR_TOKEN_EXCHANGE_DENIED'],
      ['invalid_client', 401, JSON.stringify({ error: 'invalid_client' }), 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED'],
      ['a server error', 500, '{}', 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED'],
      ['no access_token', 200, JSON.stringify({ token_type: 'Bearer' }), 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED'],
      ['a token with a line break', 200, JSON.stringify({ access_token: 'a\r\nx-injected: 1' }), 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED'],
      ['not JSON', 200, '<html>', 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED'],
      ['an answer past 64 KiB', 200, JSON.stringify({ access_token: 'x'.repeat(70_000) }), 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED'],
      ['an error code that is not a token', 400, JSON.stringify({ error: 'bad\nline' }), 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED'],
    ];
    for (const [name, status, body, expected] of table) {
      answer = () => ({ status, body });
      const x = new TokenExchanger(config(), '');
      await assert.rejects(Promise.resolve(x.value(caller(name))), (err) => code(err) === expected, name);
      assert.equal(x.size, 0, name);
    }
  });

  it('a token endpoint that never answers fails within timeoutMs', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const x = new TokenExchanger(config({ tokenUrl: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/token`, timeoutMs: 100 }), '');
      await assert.rejects(Promise.resolve(x.value(caller('t'))), (err) => code(err) === 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED' && /within 100 ms/.test((err as Error).message));
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  describe('UpstreamCredentials: which token is exchanged', () => {
    const creds = (callers?: CallerTokens) => new UpstreamCredentials({ header: 'authorization', value: undefined, prefix: 'Bearer ', clientCredentials: undefined, tokenExchange: config() } satisfies UpstreamCredentialsConfig, callers);
    const stamped = (c: CallerToken) => {
      const headers = { authorization: 'Bearer whatever' };
      stampCallerToken(headers, c);
      return headers;
    };

    it("the one the front door validated, never the Authorization header's own", async () => {
      const c = creds();
      assert.equal(await c.value({ headers: stamped(caller('validated', 'alice')), principal: 'alice' }), 'Bearer for-validated-1');
      await assert.rejects(Promise.resolve().then(() => c.value({ headers: { authorization: 'Bearer forged' }, principal: '' })), (err) => code(err) === 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED');
      assert.equal(forms.length, 1);
      assert.ok(!forms.some((f) => f.form.get('subject_token') === 'forged'));
    });

    it("never another principal's: a token must name the session's principal", async () => {
      const c = creds();
      await assert.rejects(Promise.resolve().then(() => c.value({ headers: stamped(caller('bobs', 'bob')), principal: 'alice' })), (err) => code(err) === 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED' && /not of its session's principal/.test((err as Error).message));
      assert.equal(forms.length, 0);
    });

    it("for the gateway's own requests, the session principal's latest token while it is valid", async () => {
      const callers = new CallerTokens(2);
      const c = creds(callers);
      callers.remember(caller('alice-1', 'alice'));
      callers.remember(caller('alice-2', 'alice'));
      assert.equal(await c.value({ headers: {}, principal: 'alice' }), 'Bearer for-alice-2-1');
      callers.remember(caller('bob-1', 'bob'));
      callers.remember(caller('carol-1', 'carol'));
      assert.equal(callers.latest('alice'), undefined, 'past the cap the least recently seen goes');
      callers.remember(caller('dave-1', 'dave', -1));
      assert.equal(callers.latest('dave'), undefined, 'an expired token is not used');
      await assert.rejects(Promise.resolve().then(() => c.value({ headers: {}, principal: 'dave' })), (err) => code(err) === 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED');
      await assert.rejects(Promise.resolve().then(() => c.value({ headers: {}, principal: '' })), (err) => code(err) === 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED');
    });

    it("a request's token that expired before the gateway sent what it carries (a late round, a relisten): the principal's latest, else a clear refusal", async () => {
      const callers = new CallerTokens(10);
      const c = creds(callers);
      const expired = stamped(caller('erin-old', 'erin', -1));
      await assert.rejects(Promise.resolve().then(() => c.value({ headers: expired, principal: 'erin' })), (err) => code(err) === 'MCPGW_ERR_TOKEN_EXCHANGE_FAILED' && /expired/.test((err as Error).message));
      callers.remember(caller('erin-new', 'erin'));
      assert.equal(await c.value({ headers: expired, principal: 'erin' }), 'Bearer for-erin-new-1');
      assert.ok(!forms.some((f) => f.form.get('subject_token') === 'erin-old'), 'an expired token is never exchanged');
    });
  });
});
