import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { meta, statelessHeaders } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';
import { initializeLegacy, LegacyStream } from '../helpers/legacy.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { JSON_AND_SSE, openSession, request, rpcOf } from '../helpers/raw.ts';
import { startRecordingSseUpstream, type RecordingSseUpstream } from '../helpers/recording-sse-upstream.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';

/**
 * What reaches an upstream is what the gateway parsed and checked, written again — never the
 * caller's bytes. A body that is one message to the gateway's JSON parser can be two to an
 * upstream's line reader (a bare CR is JSON whitespace, and ends a line for Python's, Java's and
 * .NET's readers), or another message to a parser that resolves duplicate keys differently. Each
 * attack below is tried on every front door against every kind of upstream: a stdio child written
 * in Python that reads its input as the official Python SDK does, a Streamable HTTP server, and a
 * 2024-11-05 SSE server, each recording what it received and what it ran.
 */
const PUBLIC = 'https://gateway.test';
const LINE_SERVER = fileURLToPath(new URL('../helpers/line-server.py', import.meta.url));
const HIDDEN = { secret_report: { scopes: ['admin'] } };
const SMUGGLED = '{"jsonrpc":"2.0","id":"smuggled","method":"tools/call","params":{"name":"secret_report","arguments":{}}}';

/** Attack bodies: each hides a call of secret_report from the gateway's reading of it. */
const ATTACKS: readonly { name: string; body: (id: number) => string; batch?: boolean }[] = [
  { name: 'a notification with a second message after a bare CR', body: () => `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1},"x":\r${SMUGGLED}\r}` },
  { name: 'a request with a second message after a bare CR', body: (id) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{}},"x":\r${SMUGGLED}\r}` },
  { name: 'a request with CR LF and NEL/LINE SEPARATOR whitespace-like characters', body: (id) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"text":"a\u2028b\u0085c"}},"x":\r\n${SMUGGLED}\r\n}` },
  { name: 'a request whose params appear twice (first-wins parsers see the hidden tool)', body: (id) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"secret_report","arguments":{}},"params":{"name":"echo","arguments":{"text":"dup"}}}` },
  { name: 'a batch whose item has a second message after a bare CR', body: (id) => `[{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{}},"x":\r${SMUGGLED}\r}]`, batch: true },
];

describe('wire: only what the gateway checked reaches an upstream', () => {
  let issuer: TestIssuer;
  let http: RecordingUpstream;
  let sse: RecordingSseUpstream;
  let gw: Gateway;
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-wire-'));
  const linesFile = join(dir, 'lines.jsonl');
  const ranFile = join(dir, 'ran.jsonl');

  before(async () => {
    [issuer, http, sse] = await Promise.all([startTestIssuer(), startRecordingUpstream({ json: true }), startRecordingSseUpstream()]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], publicUrl: PUBLIC },
      // The audit log walks every message too.
      audit: { enabled: true, destination: join(dir, 'audit.log') },
      servers: {
        py: { era: 'session', upstreams: [{ command: 'python3', args: [LINE_SERVER], env: { LINES_FILE: linesFile, RAN_FILE: ranFile } }], auth: { tools: HIDDEN } },
        http: { era: 'session', upstreams: [{ url: http.url }], auth: { tools: HIDDEN } },
        sse: { era: 'session', upstreams: [{ url: sse.url, transport: 'sse' }], auth: { tools: HIDDEN } },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), http?.close(), sse?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  const auth = async (server: string) => ({ authorization: `Bearer ${await issuer.sign({ sub: 'reader', aud: `${PUBLIC}/mcp/${server}`, scope: 'mcp' })}` });

  /** What each upstream received (one entry per message it read) and ran. */
  function seen(server: string): { received: string[]; ran: string[] } {
    if (server === 'py') {
      const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as string) : []);
      return { received: read(linesFile), ran: read(ranFile) };
    }
    if (server === 'http') return { received: http.requests.filter((r) => r.method === 'POST').map((r) => r.body), ran: http.ran };
    return { received: sse.bodies, ran: sse.ran };
  }

  function assertClean(server: string, door: string, attack: string): void {
    const { received, ran } = seen(server);
    const where = `${door} → ${server}: ${attack}`;
    assert.ok(!ran.includes('secret_report'), `${where}: the hidden tool ran`);
    for (const text of received) {
      const line = text.replace(/\n$/, '');
      assert.doesNotMatch(line, /[\r\n\u0085\u2028\u2029]/, `${where}: a line break reached the upstream: ${JSON.stringify(line)}`);
      assert.ok(!line.includes('secret_report') || !line.includes('"x"'), `${where}: the caller's extra member reached the upstream: ${line}`);
      const parsed = JSON.parse(line) as unknown;
      for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
        for (const key of Object.keys(m as object)) assert.ok(['jsonrpc', 'id', 'method', 'params', 'result', 'error'].includes(key), `${where}: member "${key}" reached the upstream`);
        assert.notEqual((m as { id?: unknown }).id, 'smuggled', `${where}: the smuggled message reached the upstream`);
      }
    }
  }

  for (const server of ['py', 'http', 'sse']) {
    it(`session door → ${server}`, async () => {
      const url = `${gw.url}/mcp/${server}`;
      const a = await auth(server);
      for (const version of ['2025-11-25', '2025-03-26']) {
        const sid = await openSession(url, version, a);
        const headers = { ...a, 'mcp-session-id': sid, 'mcp-protocol-version': version, 'content-type': 'application/json', accept: JSON_AND_SSE };
        let id = 10;
        for (const attack of ATTACKS) {
          if (attack.batch && version !== '2025-03-26') continue;
          const res = await request(url, 'POST', headers, attack.body(++id));
          assert.ok(res.status === 200 || res.status === 202, `${attack.name}: ${res.status} ${res.text}`);
          // In order after it: once this answer is here, whatever the attack made the upstream do is done.
          const sync = await request(url, 'POST', headers, JSON.stringify({ jsonrpc: '2.0', id: `sync-${id}`, method: 'tools/call', params: { name: 'echo', arguments: { text: 'sync' } } }));
          assert.equal(sync.status, 200, sync.text);
          assertClean(server, `session ${version}`, attack.name);
        }
      }
    });

    it(`2024-11-05 door → ${server}`, async () => {
      const a = await auth(server);
      const stream = await LegacyStream.open(`${gw.url}/mcp/${server}/sse`, a);
      try {
        await stream.until((events) => events.some((e) => e.event === 'endpoint'));
        const endpoint = stream.endpoint(`${gw.url}/mcp/${server}/sse`);
        await initializeLegacy(stream, endpoint, a);
        let id = 100;
        for (const attack of ATTACKS) {
          const res = await request(endpoint, 'POST', { ...a, 'content-type': 'application/json' }, attack.body(++id));
          assert.equal(res.status, 202, `${attack.name}: ${res.text}`);
          const syncId = `sync-${id}`;
          await request(endpoint, 'POST', { ...a, 'content-type': 'application/json' }, JSON.stringify({ jsonrpc: '2.0', id: syncId, method: 'tools/call', params: { name: 'echo', arguments: { text: 'sync' } } }));
          await stream.until((events) => events.some((e) => e.message?.id === syncId));
          assertClean(server, '2024-11-05', attack.name);
        }
      } finally {
        stream.drop();
      }
    });

    it(`2026-07-28 door → ${server} (translated)`, async () => {
      const url = `${gw.url}/mcp/${server}`;
      const headers = { ...(await auth(server)), ...statelessHeaders('tools/call', { name: 'echo' }) };
      const m = JSON.stringify(meta());
      const body = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":${m}},"x":\r${SMUGGLED}\r}`;
      const res = await request(url, 'POST', headers, body);
      assert.equal(res.status, 200, res.text);
      assert.match((rpcOf(res).result as { content: { text: string }[] }).content[0]!.text, /hi/);
      assertClean(server, '2026-07-28', 'a request with a second message after a bare CR');
    });
  }

  it('a hidden tool called in a message without an id reaches the upstream under a stand-in name', async () => {
    for (const server of ['py', 'http', 'sse']) {
      const url = `${gw.url}/mcp/${server}`;
      const a = await auth(server);
      const sid = await openSession(url, '2025-11-25', a);
      const headers = { ...a, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'content-type': 'application/json', accept: JSON_AND_SSE };
      const res = await request(url, 'POST', headers, JSON.stringify({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'secret_report', arguments: {} } }));
      assert.equal(res.status, 202, res.text);
      const sync = await request(url, 'POST', headers, JSON.stringify({ jsonrpc: '2.0', id: 'sync-note', method: 'tools/call', params: { name: 'echo', arguments: { text: 'sync' } } }));
      assert.equal(sync.status, 200, sync.text);
      for (const text of seen(server).received) assert.doesNotMatch(text, /secret_report/, `${server}: the hidden name reached the upstream`);
    }
  });

  it('a hidden tool named by anything but a string (["secret_report"]) is refused on every door, and never reaches the upstream', async () => {
    // The name-based rules read only strings; an upstream that looks a tool up by property
    // (`tools[name]`) reads ["secret_report"] as "secret_report".
    const calls = [
      { jsonrpc: '2.0', id: 'arr', method: 'tools/call', params: { name: ['secret_report'], arguments: {} } },
      { jsonrpc: '2.0', id: 'obj', method: 'tools/call', params: { name: { toString: 'secret_report' }, arguments: {} } },
      { jsonrpc: '2.0', method: 'tools/call', params: { name: ['secret_report'], arguments: {} } },
      { jsonrpc: '2.0', id: 'res', method: 'resources/read', params: { uri: ['secret://report'] } },
    ];
    for (const server of ['py', 'http', 'sse']) {
      const url = `${gw.url}/mcp/${server}`;
      const a = await auth(server);
      const sid = await openSession(url, '2025-11-25', a);
      const headers = { ...a, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'content-type': 'application/json', accept: JSON_AND_SSE };
      const stream = await LegacyStream.open(`${url}/sse`, a);
      try {
        await stream.until((events) => events.some((e) => e.event === 'endpoint'));
        const endpoint = stream.endpoint(`${url}/sse`);
        await initializeLegacy(stream, endpoint, a);
        for (const call of calls) {
          const session = await request(url, 'POST', headers, JSON.stringify(call));
          const legacy = await request(endpoint, 'POST', { ...a, 'content-type': 'application/json' }, JSON.stringify(call));
          const stateless = await request(url, 'POST', { ...a, ...statelessHeaders('tools/call', { name: 'secret_report' }) }, JSON.stringify({ ...call, params: { ...call.params, _meta: meta() } }));
          for (const [door, res] of [['session', session], ['2024-11-05', legacy], ['2026-07-28', stateless]] as const) {
            assert.equal(res.status, 400, `${server} ${door} ${JSON.stringify(call)}: ${res.text}`);
            assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_INVALID_REQUEST', `${server} ${door}`);
          }
        }
      } finally {
        stream.drop();
      }
      const sync = await request(url, 'POST', headers, JSON.stringify({ jsonrpc: '2.0', id: 'sync-named', method: 'tools/call', params: { name: 'echo', arguments: { text: 'sync' } } }));
      assert.equal(sync.status, 200, sync.text);
      for (const text of seen(server).received) assert.doesNotMatch(text, /secret_report|secret:\/\/report/, `${server}: the hidden name reached the upstream`);
    }
  });

  it('a body nested thousands deep is refused with a JSON-RPC error on every door, and the replica lives on', async () => {
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);
    const body = (extra: string) => `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x","d":${deep(5_000)}}${extra}}}`;
    const a = await auth('http');
    const sid = await openSession(`${gw.url}/mcp/http`, '2025-11-25', a);
    const session = await request(`${gw.url}/mcp/http`, 'POST', { ...a, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'content-type': 'application/json', accept: JSON_AND_SSE }, body(''));
    const stateless = await request(`${gw.url}/mcp/http`, 'POST', { ...a, ...statelessHeaders('tools/call', { name: 'echo' }) }, body(`,"_meta":${JSON.stringify(meta())}`));
    const init = await request(`${gw.url}/mcp/http`, 'POST', { ...a, 'content-type': 'application/json', accept: JSON_AND_SSE }, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"x":${deep(5_000)}},"clientInfo":{"name":"deep","version":"1"}}}`);
    for (const [door, res] of [['session', session], ['2026-07-28', stateless], ['initialize', init]] as const) {
      assert.equal(res.status, 400, `${door}: ${res.text}`);
      assert.equal(rpcOf(res).error?.data?.code, 'MCPGW_ERR_INVALID_REQUEST', door);
    }
    // 100 levels (the limit) still pass.
    const ok = await request(`${gw.url}/mcp/http`, 'POST', { ...a, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'content-type': 'application/json', accept: JSON_AND_SSE }, `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"text":"${'['.repeat(90)}","d":${deep(90)}}}}`);
    assert.equal(ok.status, 200, ok.text);
    // Let the audit line of each be written (it is written when the response closes).
    await new Promise((r) => setTimeout(r, 200));
  });

  it('a batch holds at most 100 messages; 100 hidden calls are each answered as unknown under their own name', async () => {
    const url = `${gw.url}/mcp/py`;
    const a = await auth('py');
    const sid = await openSession(url, '2025-03-26', a);
    const headers = { ...a, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-03-26', 'content-type': 'application/json', accept: JSON_AND_SSE };
    const calls = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ jsonrpc: '2.0', id: i + 1, method: 'tools/call', params: { name: 'secret_report', arguments: {} } })));
    const tooMany = await request(url, 'POST', headers, calls(101));
    assert.equal(tooMany.status, 400, tooMany.text);
    assert.equal(rpcOf(tooMany).error?.data?.code, 'MCPGW_ERR_BATCH_TOO_LARGE');
    const full = await request(url, 'POST', headers, calls(100));
    assert.equal(full.status, 200, full.text);
    const answers = full.text.split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)) as { id: number; error?: { message: string } });
    assert.equal(answers.length, 100);
    for (const answer of answers) assert.match(answer.error?.message ?? '', /Unknown tool: secret_report/, JSON.stringify(answer));
    assert.ok(!seen('py').ran.includes('secret_report'));
  });

  it('line separators inside strings arrive escaped and mean the same string', async () => {
    const url = `${gw.url}/mcp/py`;
    const a = await auth('py');
    const sid = await openSession(url, '2025-11-25', a);
    const headers = { ...a, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', 'content-type': 'application/json', accept: JSON_AND_SSE };
    const res = await request(url, 'POST', headers, '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a\u2028b\u2029c\u0085d\\r\\ne"}}}');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(JSON.parse((rpcOf(res).result as { content: { text: string }[] }).content[0]!.text), { text: 'a\u2028b\u2029c\u0085d\r\ne' });
  });
});
