import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { redactConfig } from '../../src/config/redact.ts';
import { ConfigError } from '../../src/errors.ts';

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
const url = { servers: { api: { upstreams: [{ url: 'http://127.0.0.1:3001/mcp' }] } } };

function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-config-'));
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Replaces "@private-jwks" with a file holding a private JWK. */
function withFiles(doc: Record<string, unknown>): Record<string, unknown> {
  const text = JSON.stringify(doc);
  if (!text.includes('@private-jwks')) return doc;
  const file = tmpFile('jwks.json', JSON.stringify({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'd' }] }));
  return JSON.parse(text.replace('"@private-jwks"', JSON.stringify(file))) as Record<string, unknown>;
}

describe('config', () => {
  it('fills defaults and freezes the result', () => {
    const { config } = loadConfig({ document: url, env: {} });
    assert.equal(config.listen.host, '127.0.0.1');
    assert.equal(config.listen.port, 8080);
    assert.equal(config.metrics.port, 9090);
    assert.deepEqual([config.listen.headersTimeoutMs, config.listen.requestTimeoutMs, config.listen.keepAliveTimeoutMs], [10_000, 30_000, 65_000]);
    assert.equal(config.redis, undefined);
    const api = config.servers.api!;
    assert.equal(api.maxFails, 3);
    assert.equal(api.failTimeoutMs, 30_000);
    assert.deepEqual(api.upstreams[0], { kind: 'http', name: 'http://127.0.0.1:3001/mcp', url: 'http://127.0.0.1:3001/mcp', headers: {}, connections: undefined });
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.servers.api) && Object.isFrozen(config.listen));
    assert.throws(() => {
      (config.listen as { port: number }).port = 1;
    }, TypeError);
  });

  it('publishes the bundled demo server when no file is given', () => {
    const loaded = loadConfig({ env: {} });
    assert.equal(loaded.embedded, true);
    const demo = loaded.config.servers.demo!;
    assert.equal(demo.upstreams[0]!.kind, 'stdio');
  });

  it('overlays MCPGW_* environment variables on the file, by schema path', () => {
    const file = tmpFile('c.yaml', 'listen: { port: 8081 }\nservers:\n  my-api:\n    upstreams: [{ url: "http://a/mcp" }, { url: "http://b/mcp" }]\n');
    const { config } = loadConfig({
      file,
      env: {
        MCPGW_LISTEN_PORT: '9000',
        MCPGW_LISTEN_BODY_LIMIT: '2048',
        MCPGW_REDIS_URL: 'redis://127.0.0.1:6380/1',
        MCPGW_SERVERS_MY_API_MAX_FAILS: '5',
        MCPGW_SERVERS_MY_API_FAIL_TIMEOUT: '10s',
        MCPGW_SERVERS_MY_API_UPSTREAMS_1_URL: 'http://c/mcp',
        MCPGW_LISTEN_ALLOWED_ORIGINS: '["https://app.example.com"]',
        MCPGW_LISTEN_HEADERS_TIMEOUT: '5s',
        MCPGW_LISTEN_REQUEST_TIMEOUT: '1m',
        MCPGW_LISTEN_KEEP_ALIVE_TIMEOUT: '5s',
      },
    });
    assert.deepEqual([config.listen.headersTimeoutMs, config.listen.requestTimeoutMs, config.listen.keepAliveTimeoutMs], [5_000, 60_000, 5_000]);
    assert.equal(config.listen.port, 9000);
    assert.equal(config.listen.bodyLimit, 2048);
    assert.equal(config.redis?.url, 'redis://127.0.0.1:6380/1');
    assert.equal(config.servers['my-api']!.maxFails, 5);
    assert.equal(config.servers['my-api']!.failTimeoutMs, 10_000);
    assert.deepEqual(config.servers['my-api']!.upstreams.map((u) => (u.kind === 'http' ? u.url : '')), ['http://a/mcp', 'http://c/mcp']);
    assert.deepEqual(config.listen.allowedOrigins, ['https://app.example.com']);
  });

  it('reads MCPGW_CONFIG when no file is passed', () => {
    const file = tmpFile('c.yaml', 'listen: { port: 8181 }\n');
    assert.equal(loadConfig({ env: { MCPGW_CONFIG: file } }).config.listen.port, 8181);
  });

  const bad: [string, Record<string, unknown> | string, NodeJS.ProcessEnv, RegExp][] = [
    ['unknown top-level key', { lisen: {} }, {}, /config key lisen is not allowed/],
    ['unknown nested key', { listen: { prot: 1 } }, {}, /config key listen\.prot is not allowed/],
    ['unknown key in an upstream', { servers: { a: { upstreams: [{ url: 'http://x/', foo: 1 }] } } }, {}, /servers\.a\.upstreams\[0\]\.foo is not allowed/],
    ['wrong type', { listen: { port: 'eighty' } }, {}, /listen\.port must be integer/],
    ['port out of range', { listen: { port: 70000 } }, {}, /listen\.port must be <= 65535/],
    ['upstream without url or command', { servers: { a: { upstreams: [{}] } } }, {}, /servers\.a\.upstreams\[0\] must have exactly one of "url" .* or "command"/],
    ['both url and command', { servers: { a: { upstreams: [{ url: 'http://x/', command: 'x' }] } } }, {}, /servers\.a\.upstreams\[0\] must have exactly one/],
    ['args on a url upstream', { servers: { a: { upstreams: [{ url: 'http://x/', args: [] }] } } }, {}, /servers\.a\.upstreams\[0\]\.args is not allowed for a url/],
    ['server without upstreams', { servers: { a: {} } }, {}, /servers\.a\.upstreams is required/],
    ['bad server name', { servers: { 'a/b': { upstreams: [{ url: 'http://x/' }] } } }, {}, /servers\.a\/b: name must match/],
    ['bad duration', { servers: { a: { upstreams: [{ url: 'http://x/' }], failTimeout: 'soon' } } }, {}, /servers\.a\.failTimeout is not a duration/],
    ['short session secret', { session: { secret: 'short' } }, {}, /session\.secret must NOT have fewer than 32 characters/],
    ['jwt without issuer', { auth: { mode: 'jwt', audience: 'x', jwksUri: 'http://x' } }, {}, /auth\.issuer is required when auth\.mode is jwt/],
    ['jwt without audience', { auth: { mode: 'jwt', issuer: 'https://idp/', jwksUri: 'http://x/jwks' }, ...url }, {}, /auth\.audience is required when auth\.mode is jwt/],
    ['an issuer without keys', { auth: { mode: 'jwt', audience: 'x', issuers: [{ issuer: 'https://idp/' }] } }, {}, /auth\.issuers\[0\] needs jwksUri or keysFile/],
    ['an HMAC algorithm', { auth: { mode: 'jwt', audience: 'x', issuer: 'i', jwksUri: 'http://x', algorithms: ['HS256'] } }, {}, /auth\.algorithms\[0\] must be equal to one of the allowed values/],
    ['alg none', { auth: { algorithms: ['none'] } }, {}, /auth\.algorithms\[0\] must be equal to one of the allowed values/],
    ['a private key in keysFile', { auth: { mode: 'jwt', audience: 'x', issuers: [{ issuer: 'i', keysFile: '@private-jwks' }] } }, {}, /auth\.issuers\[0\]\.keysFile: .* must hold public keys only/],
    ['a large clock tolerance', { auth: { clockTolerance: '10m' } }, {}, /auth\.clockTolerance must be at most 5m/],
    ['server policy without auth', { servers: { a: { upstreams: [{ url: 'http://x/' }], auth: { scopes: ['s'] } } } }, {}, /servers\.a\.auth needs auth\.mode jwt or mtls/],
    ['mtls without TLS', { auth: { mode: 'mtls' } }, {}, /listen\.tls is required when auth\.mode is mtls/],
    ['two credential sources', { servers: { a: { upstreams: [{ url: 'http://x/', credentials: { valueEnv: 'A', valueFile: '/f' } }] } } }, {}, /servers\.a\.upstreams\[0\]\.credentials needs exactly one of valueFile, valueEnv, clientCredentials or tokenExchange/],
    ['token exchange with auth off', { servers: { a: { upstreams: [{ url: 'http://x/', credentials: { tokenExchange: { tokenUrl: 'http://as/token', clientId: 'gw', clientSecret: 's' } } }] } } }, {}, /servers\.a\.upstreams\[0\]\.credentials\.tokenExchange needs auth\.mode jwt: it exchanges the caller's validated access token, and with auth\.mode none there is none/],
    ['token exchange for a stdio upstream', { auth: { mode: 'jwt', issuer: 'https://idp/', jwksUri: 'https://idp/jwks', audience: 'urn:gw' }, servers: { a: { upstreams: [{ command: 'x', credentials: { tokenExchange: { tokenUrl: 'http://as/token', clientId: 'gw', clientSecret: 's' } } }] } } }, {}, /servers\.a\.upstreams\[0\]\.credentials is not allowed for a command \(stdio\) upstream/],
    ['token exchange for a 2024-11-05 SSE upstream', { auth: { mode: 'jwt', issuer: 'https://idp/', jwksUri: 'https://idp/jwks', audience: 'urn:gw' }, servers: { a: { upstreams: [{ url: 'http://x/', transport: 'sse', credentials: { tokenExchange: { tokenUrl: 'http://as/token', clientId: 'gw', clientSecret: 's' } } }] } } }, {}, /servers\.a\.upstreams\[0\]\.credentials\.tokenExchange is not allowed with transport sse/],
    ['token exchange without a client secret', { auth: { mode: 'jwt', issuer: 'https://idp/', jwksUri: 'https://idp/jwks', audience: 'urn:gw' }, servers: { a: { upstreams: [{ url: 'http://x/', credentials: { tokenExchange: { tokenUrl: 'http://as/token', clientId: 'gw' } } }] } } }, {}, /servers\.a\.upstreams\[0\]\.credentials\.tokenExchange needs exactly one of clientSecret, clientSecretFile or clientSecretEnv/],
    ['token exchange with a zero time limit', { auth: { mode: 'jwt', issuer: 'https://idp/', jwksUri: 'https://idp/jwks', audience: 'urn:gw' }, servers: { a: { upstreams: [{ url: 'http://x/', credentials: { tokenExchange: { tokenUrl: 'http://as/token', clientId: 'gw', clientSecret: 's', timeout: 0 } } }] } } }, {}, /servers\.a\.upstreams\[0\]\.credentials\.tokenExchange\.timeout must be more than 0/],
    ['a token exchange resource with a fragment', { auth: { mode: 'jwt', issuer: 'https://idp/', jwksUri: 'https://idp/jwks', audience: 'urn:gw' }, servers: { a: { upstreams: [{ url: 'http://x/', credentials: { tokenExchange: { tokenUrl: 'http://as/token', clientId: 'gw', clientSecret: 's', resource: 'https://up/#x' } } }] } } }, {}, /tokenExchange\.resource must be an absolute URI without a fragment/],
    ['an unset credential variable', { servers: { a: { upstreams: [{ url: 'http://x/', credentials: { valueEnv: 'MCPGW_TEST_UNSET' } }] } } }, {}, /credentials\.valueEnv: environment variable MCPGW_TEST_UNSET is not set/],
    ['credentials on a stdio upstream', { servers: { a: { upstreams: [{ command: 'x', credentials: { valueEnv: 'A' } }] } } }, {}, /servers\.a\.upstreams\[0\]\.credentials is not allowed for a command/],
    ['a cache TTL over a day', { servers: { a: { upstreams: [{ url: 'http://x/' }], cache: { ttl: '25h' } } } }, {}, /servers\.a\.cache\.ttl must be at most 24h/],
    ['a zero time limit', { servers: { a: { upstreams: [{ url: 'http://x/' }], timeout: { idle: 0 } } } }, {}, /servers\.a\.timeout\.idle and servers\.a\.timeout\.max must be longer than 0/],
    ['a per-tool key for a name no MCP tool can have', { servers: { a: { upstreams: [{ url: 'http://x/' }], tools: { 'bad tool': { concurrency: 1 } } } } }, {}, /servers\.a\.tools: "bad tool" is not a valid MCP tool name/],
    ['a per-tool zero time limit', { servers: { a: { upstreams: [{ url: 'http://x/' }], tools: { t: { timeout: { max: 0 } } } } } }, {}, /servers\.a\.tools\.t\.timeout\.idle and servers\.a\.tools\.t\.timeout\.max must be longer than 0/],
    ['a per-tool concurrency of 0', { servers: { a: { upstreams: [{ url: 'http://x/' }], tools: { t: { concurrency: 0 } } } } }, {}, /servers\.a\.tools\.t\.concurrency must be >= 1/],
    ['a rate limit without requests', { servers: { a: { upstreams: [{ url: 'http://x/' }], rateLimit: { tools: { t: { per: '1m' } } } } } }, {}, /servers\.a\.rateLimit\.tools\.t\.requests is required/],
    ['a rate limit over no time', { servers: { a: { upstreams: [{ url: 'http://x/' }], rateLimit: { server: { requests: 1, per: 0 } } } } }, {}, /servers\.a\.rateLimit\.server\.per must be longer than 0/],
    ['a zero head time limit', { listen: { headersTimeout: 0 } }, {}, /listen\.headersTimeout, listen\.requestTimeout and listen\.keepAliveTimeout must be longer than 0/],
    ['a zero request time limit (from the environment)', {}, { MCPGW_LISTEN_REQUEST_TIMEOUT: '0' }, /listen\.requestTimeout .* must be longer than 0/],
    ['a head time limit over the request time limit', { listen: { headersTimeout: '1m', requestTimeout: '30s' } }, {}, /listen\.headersTimeout must not be longer than listen\.requestTimeout/],
    ['a path prefix with a quote (it goes into WWW-Authenticate)', { auth: { pathPrefix: '/a"b' } }, {}, /config key auth\.pathPrefix must match pattern/],
    ['env naming no key', {}, { MCPGW_LISTEN_PROT: '1' }, /environment variable MCPGW_LISTEN_PROT does not name a config key/],
    ['env with a bad value', {}, { MCPGW_LISTEN_PORT: 'x' }, /listen\.port must be integer/],
    ['invalid YAML', 'listen: [1, 2\n', {}, /not valid YAML \(line \d+, column \d+\)/],
    ['a YAML list', '- 1\n', {}, /must be a YAML mapping/],
    ['a duplicate key', 'listen: {}\nlisten: {}\n', {}, /not valid YAML/],
    ['missing file', '@missing', {}, /cannot read config file .*ENOENT/],
  ];
  for (const [name, doc, env, message] of bad) {
    it(`rejects ${name} with a message naming the key`, () => {
      const opts =
        typeof doc === 'string'
          ? { file: doc === '@missing' ? '/nonexistent/mcpgw.yaml' : tmpFile('bad.yaml', doc), env }
          : { document: withFiles(doc), env };
      assert.throws(() => loadConfig(opts), (err: unknown) => err instanceof ConfigError && message.test(err.message));
    });
  }

  it('resolves cache, retries, time limits and rate limits, from the file and the environment', () => {
    const { config } = loadConfig({
      document: { servers: { api: { upstreams: [{ url: 'http://x/mcp' }], cache: { invalidateOn: { touch: false } }, rateLimit: { tools: { t: { requests: 2, per: '1h' } } } } } },
      env: { MCPGW_SERVERS_API_CACHE_TTL: '5m', MCPGW_SERVERS_API_RETRY_ATTEMPTS: '1', MCPGW_SERVERS_API_RATE_LIMIT_PRINCIPAL_REQUESTS: '60', MCPGW_SERVERS_API_TIMEOUT_IDLE: '30s' },
    });
    const api = config.servers.api!;
    assert.deepEqual(api.cache, { ttlMs: 300_000, perUser: false, invalidateOn: { touch: false } });
    assert.deepEqual(api.retry, { attempts: 1, backoffMs: 100, maxBackoffMs: 2_000, budget: 0.2, minPerSecond: 5 });
    assert.deepEqual(api.timeout, { idleMs: 30_000, maxMs: 3_600_000 });
    assert.deepEqual(api.rateLimit, { principal: { requests: 60, periodMs: 60_000 }, server: undefined, tools: { t: { requests: 2, periodMs: 3_600_000 } } });
    const plain = loadConfig({ document: { servers: { b: { upstreams: [{ url: 'http://x/mcp' }] } } }, env: {} }).config.servers.b!;
    assert.deepEqual(plain.tools, {});
    assert.equal(plain.cache, undefined, 'no cache unless configured');
    assert.equal(plain.rateLimit, undefined);
    assert.deepEqual(config.cache, { maxEntryBytes: 1_048_576, maxEntries: 10_000, maxBytes: 67_108_864 });
  });

  it("resolves a tool's own limits over the server's", () => {
    const { config } = loadConfig({
      document: { servers: { api: { upstreams: [{ url: 'http://x/mcp' }], timeout: { idle: '1m', max: '10m' }, tools: { search: { timeout: { idle: '5s' } }, report: { retry: { attempts: 1, maxBackoff: '5s' }, concurrency: 2 } } } } },
      env: { MCPGW_SERVERS_API_TOOLS: '{"search": {"timeout": {"idle": "5s"}}, "report": {"retry": {"attempts": 1, "maxBackoff": "5s"}, "concurrency": 2}, "export.csv": {"timeout": {"max": "2h"}}}' },
    });
    const api = config.servers.api!;
    assert.deepEqual(api.tools.search, { timeout: { idleMs: 5_000, maxMs: 600_000 }, retry: api.retry, concurrency: undefined });
    assert.deepEqual(api.tools.report, { timeout: api.timeout, retry: { ...api.retry, attempts: 1, maxBackoffMs: 5_000 }, concurrency: 2 });
    assert.deepEqual(api.tools['export.csv']!.timeout, { idleMs: 60_000, maxMs: 7_200_000 });
  });

  it('resolves auth: issuers, audiences, policy, credentials from file and environment', () => {
    const secretFile = tmpFile('token', 'file-token\n');
    const { config } = loadConfig({
      document: {
        auth: { mode: 'jwt', issuer: 'https://idp/', jwksUri: 'https://idp/jwks', audience: 'urn:a', publicUrl: 'https://gw.example.com/', scopes: ['mcp'], claims: { tenant: 'acme' } },
        servers: {
          api: {
            upstreams: [
              { url: 'http://x/mcp', credentials: { valueFile: secretFile, prefix: 'Bearer ' } },
              { url: 'http://y/mcp', credentials: { header: 'X-Api-Key', valueEnv: 'MY_KEY' } },
            ],
            auth: { scopes: ['api'], claims: { tenant: ['acme', 'other'] }, tools: { 'admin_*': { scopes: ['admin'] } } },
          },
        },
      },
      env: { MY_KEY: 'env-key' },
    });
    assert.deepEqual(config.auth.issuers.map((i) => i.issuer), ['https://idp/']);
    assert.equal(config.auth.clockToleranceSec, 30);
    const api = config.servers.api!;
    assert.deepEqual(api.policy.audience, ['urn:a', 'https://gw.example.com/mcp/api']);
    assert.deepEqual(api.policy.rule, { scopes: ['mcp', 'api'], claims: { tenant: ['acme'] } });
    assert.equal(api.policy.filtersItems, true);
    const [a, b] = api.upstreams as readonly { credentials?: { header: string; value?: string } }[];
    assert.equal(a!.credentials!.header, 'authorization');
    assert.equal(a!.credentials!.value, 'Bearer file-token');
    assert.equal(b!.credentials!.header, 'x-api-key');
    assert.equal(b!.credentials!.value, 'env-key');
  });

  it('resolves a token exchange: defaults, the secret from the environment, resource = the upstream, secrets redacted', () => {
    const { config, effective } = loadConfig({
      document: {
        auth: { mode: 'jwt', issuer: 'https://idp/', jwksUri: 'https://idp/jwks', audience: 'urn:a' },
        servers: {
          api: {
            upstreams: [
              { url: 'https://up.example/mcp', credentials: { tokenExchange: { tokenUrl: 'https://idp/token', clientId: 'gw', clientSecretEnv: 'GW_SECRET', scope: 'files' } } },
              { url: 'https://other.example/mcp', credentials: { tokenExchange: { tokenUrl: 'https://idp/token', clientId: 'gw', clientSecret: 'literal-secret-0123456789', clientAuth: 'client_secret_post', audience: 'other', timeout: '2s', cacheSize: 5 } } },
            ],
            cache: { ttl: '1m' },
          },
          plain: { upstreams: [{ url: 'https://plain.example/mcp' }], cache: { ttl: '1m' } },
          both: { compose: ['api', 'plain'], cache: { ttl: '1m' } },
        },
      },
      env: { GW_SECRET: 'env-secret-0123456789\n' },
    });
    const [a, b] = config.servers.api!.upstreams as readonly { credentials?: { header: string; prefix: string; tokenExchange?: unknown } }[];
    assert.equal(a!.credentials!.header, 'authorization');
    assert.equal(a!.credentials!.prefix, 'Bearer ');
    assert.deepEqual(a!.credentials!.tokenExchange, {
      tokenUrl: 'https://idp/token', clientId: 'gw', clientSecret: 'env-secret-0123456789', clientAuth: 'client_secret_basic', scope: 'files', resource: 'https://up.example/mcp', audience: undefined, timeoutMs: 10_000, cacheSize: 10_000,
    });
    assert.deepEqual(b!.credentials!.tokenExchange, {
      tokenUrl: 'https://idp/token', clientId: 'gw', clientSecret: 'literal-secret-0123456789', clientAuth: 'client_secret_post', scope: undefined, resource: undefined, audience: 'other', timeoutMs: 2_000, cacheSize: 5,
    });
    // Answers made for one caller's token are cached for that caller only, also through a virtual server.
    assert.equal(config.servers.api!.cache!.perUser, true);
    assert.equal(config.servers.both!.cache!.perUser, true);
    assert.equal(config.servers.plain!.cache!.perUser, false);
    const printed = JSON.stringify(redactConfig(effective));
    assert.ok(!printed.includes('literal-secret') && !printed.includes('env-secret'), printed);
  });

  it('redacts secrets when printing', () => {
    const { effective } = loadConfig({
      document: {
        session: { secret: 'x'.repeat(40) },
        redis: { url: 'redis://user:hunter2@redis:6379/0' },
        servers: {
          a: { upstreams: [{ url: 'http://x/mcp', headers: { authorization: 'Bearer abc' } }] },
          b: { upstreams: [{ command: 'srv', env: { API_KEY: 'k' } }] },
        },
      },
      env: {},
    });
    const text = JSON.stringify(redactConfig(effective));
    for (const secret of ['x'.repeat(40), 'hunter2', 'Bearer abc', '"k"']) assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
    assert.match(text, /redis:\/\/user:\[redacted\]@redis:6379\/0/);
  });

  it('names each replica publicly: its URL without userinfo, query or fragment, its configured name, or stdio:<index>', () => {
    const names = (upstreams: Record<string, unknown>[]) =>
      loadConfig({ document: { servers: { s: { upstreams } } }, env: {} }).config.servers.s!.upstreams.map((u) => u.name);
    assert.deepEqual(names([{ url: 'https://user:pw@API.example.com:443/v1/mcp?api_key=K#frag' }, { url: 'http://10.0.0.2:3001/mcp' }]), [
      'https://api.example.com/v1/mcp',
      'http://10.0.0.2:3001/mcp',
    ]);
    // A path segment that looks like a token is a secret too (e.g. a key in the path).
    assert.deepEqual(names([{ url: 'https://h/mcp/sk-ak-0123456789abcdefghij/sse' }]), ['https://h/mcp/[redacted]/sse']);
    // Replicas whose URLs differ only in what is hidden stay distinct, told apart by index.
    assert.deepEqual(names([{ url: 'http://h/mcp?k=1' }, { url: 'http://h/mcp?k=2' }, { url: 'http://i/mcp' }]), ['http://h/mcp [0]', 'http://h/mcp [1]', 'http://i/mcp']);
    assert.deepEqual(names([{ url: 'http://h/mcp?k=1', name: 'eu-1' }, { url: 'http://h/mcp?k=2', name: 'eu-2' }]), ['eu-1', 'eu-2']);
    assert.deepEqual(names([{ command: 'a' }, { command: 'b', name: 'b' }]), ['stdio:0', 'b']);
    assert.throws(() => names([{ url: 'http://h/a', name: 'x' }, { url: 'http://h/b', name: 'x' }]), /servers\.s\.upstreams\[1\]\.name: "x" names two replicas/);
    assert.throws(() => names([{ url: 'http://h/a', name: 'has space' }]), /servers\.s\.upstreams\[0\]\.name must match pattern/);
    // A URL that cannot be parsed is named by its key, not quoted: it may hold a secret.
    assert.throws(
      () => names([{ url: 'http://u:pa/ss@h/mcp' }]),
      (err: Error) => err instanceof ConfigError && /servers\.s\.upstreams\[0\]\.url is not a valid URL/.test(err.message) && !err.message.includes('pa/ss'),
    );
  });

  it('refuses a token URL that cannot be parsed, naming the key and not the value', () => {
    const doc = { servers: { a: { upstreams: [{ url: 'http://h/mcp', credentials: { clientCredentials: { tokenUrl: 'https://u:pa/ss@idp/token', clientId: 'gw', clientSecret: 'x' } } }] } } };
    assert.throws(
      () => loadConfig({ document: doc, env: {} }),
      (err: Error) => err instanceof ConfigError && /servers\.a\.upstreams\[0\]\.credentials\.clientCredentials\.tokenUrl is not a valid URL/.test(err.message) && !err.message.includes('pa/ss'),
    );
  });

  it('CLI: --print-config hides secrets by rule wherever they sit: URL userinfo, query and fragment, stdio args, env, headers', () => {
    const file = tmpFile(
      'secrets.yaml',
      `session: { secret: "${'s'.repeat(40)}" }
redis: { url: "redis://default:REDISPW@redis:6379/0" }
auth:
  mode: jwt
  audience: [urn:mcp]
  issuers:
    - { issuer: "https://idp.example.com/", jwksUri: "https://jwks-user:JWKSPW@idp.example.com/jwks?key=JWKSQ" }
servers:
  api:
    upstreams:
      - url: "http://user:pw@127.0.0.1:1/mcp?api_key=SECRET123"
        headers: { x-custom: HDRSECRET }
        credentials: { clientCredentials: { tokenUrl: "https://idp.example.com/token?assertion=TOKQ#FRAG", clientId: gw, clientSecret: CCSECRET } }
  tools:
    upstreams:
      - command: node
        args: [x.js, --token=SECRET456, --api-key, SECRET789, --port, "8080", PLAIN_VAR=ENVARG, "sk-proj-0123456789abcdefXYZ", --url=http://u:URLPW@h/x]
        env: { SOME_VAR: ENVSECRET }
`,
    );
    const out = execFileSync(process.execPath, [CLI, '--config', file, '--print-config'], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
    for (const secret of ['REDISPW', 'JWKSPW', 'JWKSQ', ':pw@', 'SECRET123', 'HDRSECRET', 'TOKQ', 'FRAG', 'CCSECRET', 'SECRET456', 'SECRET789', 'ENVARG', 'sk-proj', 'URLPW', 'ENVSECRET']) {
      assert.ok(!out.includes(secret), `${secret} leaked: ${out}`);
    }
    // What is not secret stays readable.
    for (const shown of [
      'redis://default:[redacted]@redis:6379/0',
      'https://jwks-user:[redacted]@idp.example.com/jwks?key=[redacted]',
      'http://user:[redacted]@127.0.0.1:1/mcp?api_key=[redacted]',
      'https://idp.example.com/token?assertion=[redacted]#[redacted]',
      '- x.js\n',
      '- --token=[redacted]\n',
      '- --api-key\n',
      '- --port\n',
      '- "8080"\n',
      '- PLAIN_VAR=[redacted]\n',
      '- --url=http://u:[redacted]@h/x\n',
      'SOME_VAR: "[redacted]"',
      'clientId: gw',
    ]) {
      assert.ok(out.includes(shown), `${shown} not shown: ${out}`);
    }
  });

  it('CLI: --print-config prints the effective config redacted; bad config exits 1 naming the key, no stack', () => {
    const good = tmpFile('good.yaml', `session: { secret: "${'s'.repeat(40)}" }\nservers: { a: { upstreams: [{ url: "http://x/mcp" }] } }\n`);
    const out = execFileSync(process.execPath, [CLI, '--config', good, '--print-config'], { env: { PATH: process.env.PATH, MCPGW_LISTEN_PORT: '8123' }, encoding: 'utf8' });
    assert.match(out, /port: 8123/);
    assert.match(out, /secret: "?\[redacted\]"?/);
    assert.ok(!out.includes('s'.repeat(40)));

    const badFile = tmpFile('bad.yaml', 'listen: { prot: 1 }\n');
    const res = spawnSync(process.execPath, [CLI, '--config', badFile], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
    assert.equal(res.status, 1);
    assert.match(res.stderr, /config key listen\.prot is not allowed/);
    assert.ok(!/\n\s+at /.test(res.stderr), `stack trace printed: ${res.stderr}`);
  });
});
