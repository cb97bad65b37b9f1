import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient, textOf } from '../helpers/client.ts';
import { statelessPost } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startOidcProvider, type OidcProvider } from '../helpers/oauth.ts';
import { rpcOf } from '../helpers/raw.ts';
import { until } from '../helpers/streams.ts';

/** The marks of the tool `query`: `region`, `tenant` and `limit` are mirrored into Mcp-Param-* headers. */
const MARKS: Readonly<Record<string, string>> = { region: 'Region', tenant: 'Tenant', limit: 'Limit' };

/** The marked tool, with these marks. */
function queryTool(marks: Readonly<Record<string, string>>) {
  return {
    name: 'query',
    description: 'Runs a query in a region, for a tenant',
    inputSchema: {
      type: 'object',
      properties: {
        region: { type: 'string', 'x-mcp-header': marks.region },
        tenant: { type: 'string', 'x-mcp-header': marks.tenant },
        limit: { type: 'integer', 'x-mcp-header': marks.limit },
        sql: { type: 'string' },
      },
      required: ['region', 'sql'],
    },
  };
}

function decode(v: string): string {
  const m = /^=\?base64\?(.*)\?=$/.exec(v);
  return m ? Buffer.from(m[1]!, 'base64').toString('utf8') : v;
}

/**
 * A 2026-07-28-only MCP server in this process that checks Mcp-Param-* headers against the body
 * as the revision requires of a server (a value without its header, a header without its value,
 * or one that says something else → 400, -32020), and records what reached it. A bearer token
 * for the user `turnedAway` is refused (403, after 300 ms); its list takes `listDelayMs` to come;
 * `strict`, it refuses a header no mark names too.
 */
async function startMarkedUpstream(opts: { turnedAway?: string; listDelayMs?: number; strict?: boolean } = {}) {
  let marks = MARKS;
  const seen: { method: string; headers: IncomingHttpHeaders; params: Record<string, unknown> }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const msg = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown; method: string; params?: Record<string, unknown> };
      const params = msg.params ?? {};
      seen.push({ method: msg.method, headers: req.headers, params });
      const answer = (status: number, body: Record<string, unknown>) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, ...body }));
      const auth = req.headers.authorization;
      // After a while: long enough for another caller to come while the refusal is on its way.
      if (opts.turnedAway && auth?.startsWith('Bearer ') && decodeJwt(auth.slice(7)).sub === opts.turnedAway) return void setTimeout(() => answer(403, { error: { code: -32600, message: 'Forbidden' } }), 300);
      switch (msg.method) {
        case 'server/discover':
          return answer(200, { result: { supportedVersions: ['2026-07-28'], capabilities: { tools: {} }, resultType: 'complete', _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'marked', version: '1.0.0' } } } });
        case 'tools/list':
          return void setTimeout(() => answer(200, { result: { tools: [queryTool(marks)], resultType: 'complete' } }), opts.listDelayMs ?? 0);
        case 'tools/call': {
          const args = (params.arguments ?? {}) as Record<string, unknown>;
          const known = new Set(Object.values(marks).map((mark) => `mcp-param-${mark.toLowerCase()}`));
          const unknown = Object.keys(req.headers).find((h) => h.startsWith('mcp-param-') && !known.has(h));
          if (opts.strict && unknown) return answer(400, { error: { code: -32020, message: `Header mismatch: ${unknown} names no argument` } });
          for (const [arg, mark] of Object.entries(marks)) {
            const header = `mcp-param-${mark.toLowerCase()}`;
            const value = args[arg];
            const h = req.headers[header];
            const ok = value === undefined || value === null ? h === undefined : typeof h === 'string' && decode(h) === String(value);
            if (!ok) return answer(400, { error: { code: -32020, message: `Header mismatch: ${header} '${String(h)}' does not match body value '${String(value)}'` } });
          }
          return answer(200, { result: { content: [{ type: 'text', text: JSON.stringify(args) }], resultType: 'complete' } });
        }
        default:
          return answer(404, { error: { code: -32601, message: 'Method not found' } });
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    seen,
    calls: () => seen.filter((r) => r.method === 'tools/call'),
    /** The tool's marks change (its clients are not told). */
    remark: (arg: string, mark: string) => void (marks = { ...marks, [arg]: mark }),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('curation: the Mcp-Param-* headers going upstream are written from the arguments the gateway sends', () => {
  let up: Awaited<ReturnType<typeof startMarkedUpstream>>;
  let gw: Gateway;

  before(async () => {
    up = await startMarkedUpstream();
    const curation = { tools: { edit: { query: { fixed: { region: 'eu-west1' }, defaults: { tenant: 'acme' } } } } };
    gw = await startGateway({
      servers: {
        curated: { era: 'stateless', upstreams: [{ url: up.url }], curation },
        // The same, on a server whose tool list this gateway has not seen yet.
        cold: { era: 'stateless', upstreams: [{ url: up.url }], curation },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  const call = (server: string, args: Record<string, unknown>, headers: Record<string, string> = {}) =>
    statelessPost(`${gw.url}/mcp/${server}`, 'tools/call', { name: 'query', arguments: args }, { headers });

  it("a caller's header for a fixed argument, or one for a default the gateway set, never reaches the upstream (its list not seen yet: the gateway asks for it)", async () => {
    const from = up.seen.length;
    const res = await call('cold', { sql: 'select 1', region: 'us-east1' }, { 'mcp-param-region': 'us-east1', 'mcp-param-tenant': 'evil', 'mcp-param-unmarked': 'x' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(JSON.parse(textOf(rpcOf(res).result)), { sql: 'select 1', region: 'eu-west1', tenant: 'acme' });
    const sent = up.calls().at(-1)!;
    assert.equal(sent.headers['mcp-param-region'], 'eu-west1', 'the fixed value, as the body carries it');
    assert.equal(sent.headers['mcp-param-tenant'], 'acme', 'the default the gateway set gets its header');
    assert.equal(sent.headers['mcp-param-unmarked'], undefined, 'a header no argument is marked for is not sent');
    assert.deepEqual(up.seen.slice(from).map((r) => r.method), ['tools/list', 'tools/call'], "the gateway learnt the tool's marks from the upstream's own list");
    // Known now: the next call needs no list.
    const again = await call('cold', { sql: 'select 2' });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(up.seen.slice(from + 2).map((r) => r.method), ['tools/call']);
  });

  it("a caller's own value of a default argument, and an integer, get their headers from the body", async () => {
    // The caller lists the tools first (as a 2026-07-28 client does): the gateway learns the marks on the way.
    const list = await statelessPost(`${gw.url}/mcp/curated`, 'tools/list', {});
    assert.equal(list.status, 200, list.text);
    const published = (rpcOf(list).result as { tools: { inputSchema: { properties: Record<string, unknown> } }[] }).tools[0]!;
    assert.ok(!('region' in published.inputSchema.properties), 'the fixed argument is not published');
    const from = up.seen.length;
    const res = await call('curated', { sql: 'select 3', tenant: 'Glöbex ', limit: 5 }, { 'mcp-param-tenant': '=?base64?R2zDtmJleCA=?=', 'mcp-param-limit': '5', 'mcp-param-region': 'us-east1' });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(up.seen.slice(from).map((r) => r.method), ['tools/call']);
    const sent = up.calls().at(-1)!;
    assert.equal(sent.headers['mcp-param-region'], 'eu-west1');
    assert.equal(sent.headers['mcp-param-tenant'], '=?base64?R2zDtmJleCA=?=', 'not plain ASCII without surrounding spaces: base64');
    assert.equal(decode(sent.headers['mcp-param-tenant'] as string), 'Glöbex ');
    assert.equal(sent.headers['mcp-param-limit'], '5');
  });

  it('a session-era client (SDK 1.x) translated to the 2026-07-28 upstream gets the headers of the arguments curation set', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/curated`);
    try {
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name), ['query']);
      const result = await client.callTool({ name: 'query', arguments: { sql: 'select 4' } });
      assert.deepEqual(JSON.parse(textOf(result)), { sql: 'select 4', region: 'eu-west1', tenant: 'acme' });
    } finally {
      await close();
    }
    const sent = up.calls().at(-1)!;
    assert.equal(sent.headers['mcp-param-region'], 'eu-west1');
    assert.equal(sent.headers['mcp-param-tenant'], 'acme');
  });
});

describe('an uncurated server: the Mcp-Param-* headers going to a 2026-07-28 upstream follow the arguments sent', () => {
  let up: Awaited<ReturnType<typeof startMarkedUpstream>>;
  let gw: Gateway;

  before(async () => {
    up = await startMarkedUpstream();
    gw = await startGateway({
      servers: {
        plain: { era: 'stateless', upstreams: [{ url: up.url }] },
        // The same upstream, on servers whose tool list this gateway has not seen yet.
        cold: { era: 'stateless', upstreams: [{ url: up.url }] },
        native: { era: 'stateless', upstreams: [{ url: up.url }] },
        remarked: { era: 'stateless', upstreams: [{ url: up.url }] },
        contested: { era: 'stateless', upstreams: [{ url: up.url }] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  /** What reached the upstream since `from`, but the listen streams an SDK 1.x client's GET stream opens. */
  const methodsFrom = (from: number) => up.seen.slice(from).map((r) => r.method).filter((m) => m !== 'subscriptions/listen');
  const call = (server: string, args: Record<string, unknown>, headers: Record<string, string> = {}) =>
    statelessPost(`${gw.url}/mcp/${server}`, 'tools/call', { name: 'query', arguments: args }, { headers });

  it('a session-era client (SDK 1.x) translated to the upstream gets the headers of its arguments (the marks not known yet: the gateway asks for the list)', async () => {
    const from = up.seen.length;
    const { client, close } = await connectClient(`${gw.url}/mcp/cold`);
    try {
      const result = await client.callTool({ name: 'query', arguments: { sql: 'select 1', region: 'eu-west1', limit: 7 } });
      assert.deepEqual(JSON.parse(textOf(result)), { sql: 'select 1', region: 'eu-west1', limit: 7 });
      const again = await client.callTool({ name: 'query', arguments: { sql: 'select 2', region: 'Zürich', tenant: 'acme' } });
      assert.deepEqual(JSON.parse(textOf(again)), { sql: 'select 2', region: 'Zürich', tenant: 'acme' });
    } finally {
      await close();
    }
    assert.deepEqual(methodsFrom(from), ['server/discover', 'tools/list', 'tools/call', 'tools/call'], 'the list is asked for once');
    const [first, second] = up.calls().slice(-2);
    assert.equal(first!.headers['mcp-param-region'], 'eu-west1');
    assert.equal(first!.headers['mcp-param-limit'], '7');
    assert.equal(first!.headers['mcp-param-tenant'], undefined);
    assert.equal(decode(second!.headers['mcp-param-region'] as string), 'Zürich');
    assert.equal(second!.headers['mcp-param-tenant'], 'acme');
  });

  it('a session-era client that listed the tools first: the marks were learnt from the list as it passed', async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/plain`);
    try {
      assert.deepEqual((await client.listTools()).tools.map((t) => t.name), ['query']);
      const from = up.seen.length;
      const result = await client.callTool({ name: 'query', arguments: { sql: 'select 3', region: 'us-east1' } });
      assert.deepEqual(JSON.parse(textOf(result)), { sql: 'select 3', region: 'us-east1' });
      assert.deepEqual(methodsFrom(from), ['tools/call']);
    } finally {
      await close();
    }
    assert.equal(up.calls().at(-1)!.headers['mcp-param-region'], 'us-east1');
  });

  it("a 2026-07-28 client's headers: passed on while the marks are unknown; once known, a marked argument's header is written from the body", async () => {
    const from = up.seen.length;
    const unknown = await call('native', { sql: 'select 4', region: 'eu-west1' }, { 'mcp-param-region': 'eu-west1' });
    assert.equal(unknown.status, 200, unknown.text);
    assert.deepEqual(methodsFrom(from), ['tools/call'], 'no list is asked for: the caller wrote its headers');
    const list = await statelessPost(`${gw.url}/mcp/native`, 'tools/list', {});
    assert.equal(list.status, 200, list.text);
    const res = await call('native', { sql: 'select 5', region: 'eu-west1', limit: 2 }, { 'mcp-param-region': 'us-east1', 'mcp-param-tenant': 'evil', 'mcp-param-unmarked': 'x' });
    assert.equal(res.status, 200, res.text);
    const sent = up.calls().at(-1)!;
    assert.equal(sent.headers['mcp-param-region'], 'eu-west1', 'a header disagreeing with the body does not reach the upstream');
    assert.equal(sent.headers['mcp-param-tenant'], undefined, 'nor one for an argument the body does not have');
    assert.equal(sent.headers['mcp-param-limit'], '2', 'a marked argument the caller sent no header for gets one');
    assert.equal(sent.headers['mcp-param-unmarked'], 'x', 'a header no known mark names passes as for any server (the upstream checks it)');
  });

  it("marks that changed upstream since they were learnt: the refused call makes the gateway forget them, and the next one reads the list again", async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/remarked`);
    try {
      await client.listTools();
      assert.ok(!(await client.callTool({ name: 'query', arguments: { sql: 'select 6', region: 'eu-west1' } })).isError);
      up.remark('region', 'Zone');
      const refused = await client.callTool({ name: 'query', arguments: { sql: 'select 7', region: 'eu-west1' } }).catch((err: Error) => err);
      assert.match(String(refused instanceof Error ? refused.message : JSON.stringify(refused)), /-32020|mismatch/i, 'the stale marks wrote the old header');
      const from = up.seen.length;
      const result = await client.callTool({ name: 'query', arguments: { sql: 'select 8', region: 'eu-west1' } });
      assert.deepEqual(JSON.parse(textOf(result)), { sql: 'select 8', region: 'eu-west1' });
      assert.deepEqual(methodsFrom(from), ['tools/list', 'tools/call']);
      assert.equal(up.calls().at(-1)!.headers['mcp-param-zone'], 'eu-west1');
    } finally {
      up.remark('region', 'Region');
      await close();
    }
  });

  it("a caller's own call refused for a marked argument no header can carry does not make the gateway forget the marks other callers' calls need", async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/contested`);
    try {
      // The gateway reads the list for this client's first call (and not again for 30 s).
      assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: 'query', arguments: { sql: 'select 9', region: 'eu-west1' } }))), { sql: 'select 9', region: 'eu-west1' });
      // Another caller's region is not a string: no header can say it, and the upstream refuses the call.
      for (const region of [1.5, { zone: 'a' }, 'x'.repeat(5_000)]) {
        const own = await call('contested', { sql: 'select 10', region });
        assert.equal(own.status, 400, own.text);
      }
      const result = await client.callTool({ name: 'query', arguments: { sql: 'select 11', region: 'eu-west1' } });
      assert.deepEqual(JSON.parse(textOf(result)), { sql: 'select 11', region: 'eu-west1' });
      assert.equal(up.calls().at(-1)!.headers['mcp-param-region'], 'eu-west1');
    } finally {
      await close();
    }
  });
});

describe("Mcp-Param-* marks of an upstream that takes callers' exchanged tokens", () => {
  const AUD = 'urn:mcpgw:test';
  let oidc: OidcProvider;
  let up: Awaited<ReturnType<typeof startMarkedUpstream>>;
  let gw: Gateway;
  let dir: string;

  before(async () => {
    oidc = await startOidcProvider();
    up = await startMarkedUpstream({ turnedAway: 'outsider' });
    dir = mkdtempSync(join(tmpdir(), 'mcpgw-marks-exchange-'));
    writeFileSync(join(dir, 'secret'), 'gateway-secret-0123456789\n');
    const credentials = { tokenExchange: { tokenUrl: oidc.tokenUrl, clientId: 'gateway', clientSecretFile: join(dir, 'secret'), scope: 'upstream', resource: 'https://upstream.test/mcp' } };
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: oidc.issuer, jwksUri: oidc.jwksUri, algorithms: ['RS256'] }], audience: AUD },
      servers: {
        curated: { era: 'stateless', upstreams: [{ url: up.url, credentials }], curation: { tools: { edit: { query: { fixed: { region: 'eu-west1' } } } } } },
        beside: { era: 'stateless', upstreams: [{ url: up.url, credentials }], curation: { tools: { edit: { query: { fixed: { region: 'eu-west1' } } } } } },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
    await oidc?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("the list asked for a caller the upstream turns away (403) does not hold another caller's look back for 30 s", async () => {
    const [outsider, reader] = await Promise.all([oidc.token('outsider', 'tools:read', AUD), oidc.token('reader', 'mcp tools:read', AUD)]);
    const call = (token: string) => statelessPost(`${gw.url}/mcp/curated`, 'tools/call', { name: 'query', arguments: { sql: 'select 1' } }, { headers: { authorization: `Bearer ${token}` } });
    const refused = await call(outsider);
    assert.equal(refused.status, 403, refused.text);
    const res = await call(reader);
    assert.equal(res.status, 200, res.text);
    assert.equal(up.calls().at(-1)!.headers['mcp-param-region'], 'eu-west1');
  });

  it("a caller waiting on the list asked for a caller the upstream turns away asks for it itself", async () => {
    const [outsider, reader] = await Promise.all([oidc.token('outsider', 'tools:read', AUD), oidc.token('reader', 'mcp tools:read', AUD)]);
    const call = (server: string, token: string) => statelessPost(`${gw.url}/mcp/${server}`, 'tools/call', { name: 'query', arguments: { sql: 'select 2' } }, { headers: { authorization: `Bearer ${token}` } });
    const refused = call('beside', outsider);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const res = await call('beside', reader);
    assert.equal(res.status, 200, res.text);
    assert.equal((await refused).status, 403);
  });
});

describe('Mcp-Param-* marks: the list the gateway asks for on behalf of a caller who gives up', () => {
  let up: Awaited<ReturnType<typeof startMarkedUpstream>>;
  let gw: Gateway;

  before(async () => {
    up = await startMarkedUpstream({ listDelayMs: 400 });
    gw = await startGateway({ servers: { curated: { era: 'stateless', upstreams: [{ url: up.url }], curation: { tools: { edit: { query: { fixed: { region: 'eu-west1' } } } } } } } });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  it("is read to its end: a caller closing its request while the list comes does not leave others' calls without their headers for 30 s", async () => {
    const call = (signal?: AbortSignal) => statelessPost(`${gw.url}/mcp/curated`, 'tools/call', { name: 'query', arguments: { sql: 'select 1' } }, { signal });
    const gone = new AbortController();
    const first = call(gone.signal).catch((err: Error) => err);
    await until(() => up.seen.some((r) => r.method === 'tools/list'), 'the gateway asked for the list');
    gone.abort();
    assert.ok((await first) instanceof Error);
    const res = await call();
    assert.equal(res.status, 200, res.text);
    assert.equal(up.calls().at(-1)!.headers['mcp-param-region'], 'eu-west1');
  });
});

describe('Mcp-Param-* marks of an upstream that refuses a header no mark names', () => {
  let up: Awaited<ReturnType<typeof startMarkedUpstream>>;
  let gw: Gateway;

  before(async () => {
    up = await startMarkedUpstream({ strict: true });
    gw = await startGateway({ servers: { strict: { era: 'stateless', upstreams: [{ url: up.url }] } } });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  it("a caller's call refused for a header of its own does not make the gateway forget the marks", async () => {
    const { client, close } = await connectClient(`${gw.url}/mcp/strict`);
    try {
      assert.deepEqual(JSON.parse(textOf(await client.callTool({ name: 'query', arguments: { sql: 'select 1', region: 'eu-west1' } }))), { sql: 'select 1', region: 'eu-west1' });
      const own = await statelessPost(`${gw.url}/mcp/strict`, 'tools/call', { name: 'query', arguments: { sql: 'select 2', region: 'eu-west1' } }, { headers: { 'mcp-param-shard': '7' } });
      assert.equal(own.status, 400, own.text);
      const result = await client.callTool({ name: 'query', arguments: { sql: 'select 3', region: 'eu-west1' } });
      assert.deepEqual(JSON.parse(textOf(result)), { sql: 'select 3', region: 'eu-west1' });
    } finally {
      await close();
    }
  });
});
