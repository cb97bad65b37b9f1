import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { CurationConfig } from '../../src/config/types.ts';
import { Curation } from '../../src/curation/curation.ts';
import { globPattern } from '../../src/config/curation.ts';
import { ConfigError } from '../../src/errors.ts';
import { envelope } from '../../src/protocol/jsonrpc.ts';
import { LISTS, rewriteAnswer } from '../../src/upstream/rewrite.ts';

function curationOf(curation: Record<string, unknown>): CurationConfig {
  const { config } = loadConfig({ document: { servers: { s: { upstreams: [{ url: 'http://127.0.0.1:1/mcp' }], curation } } }, env: {} });
  return config.servers.s!.curation!;
}

describe('curation config', () => {
  const refused: [string, Record<string, unknown>, RegExp][] = [
    ['two tools under one name', { tools: { edit: { a: { name: 'x' }, b: { name: 'x' } } } }, /servers\.s\.curation\.tools\.edit\.b: tools "a" and "b" would both be published as "x"/],
    ['a rename onto an edited tool that keeps its name', { tools: { edit: { a: { name: 'b' }, b: { description: 'd' } } } }, /tools "a" and "b" would both be published as "b"/],
    ['a name with a space', { tools: { edit: { a: { name: 'a b' } } } }, /servers\.s\.curation\.tools\.edit\.a\.name/],
    ['a name past 64 characters', { tools: { edit: { a: { name: 'x'.repeat(65) } } } }, /servers\.s\.curation\.tools\.edit\.a\.name/],
    ['an empty name', { tools: { edit: { a: { name: '' } } } }, /servers\.s\.curation\.tools\.edit\.a\.name/],
    ['an argument both fixed and a default', { tools: { edit: { a: { fixed: { n: 1 }, defaults: { n: 2 } } } } }, /argument "n" is both fixed and a default/],
    ['an unknown annotation', { tools: { edit: { a: { annotations: { sneakyHint: true } } } } }, /annotations/],
    ['an unknown key', { tools: { hide: ['a'] } }, /servers\.s\.curation\.tools/],
  ];
  for (const [what, curation, message] of refused) {
    it(`refuses ${what}`, () => {
      assert.throws(() => curationOf(curation), (err: unknown) => err instanceof ConfigError && message.test(err.message));
    });
  }

  it('takes a swap of two names and 64-character names', () => {
    const c = new Curation(curationOf({ tools: { edit: { a: { name: 'b' }, b: { name: 'a' }, c: { name: 'x'.repeat(64) } } } }));
    assert.equal(c.upstreamTool('a'), 'b');
    assert.equal(c.upstreamTool('b'), 'a');
    assert.equal(c.upstreamTool('x'.repeat(64)), 'c');
    assert.equal(c.upstreamTool('c'), undefined);
  });
});

describe('Curation', () => {
  const c = new Curation(
    curationOf({
      tools: { include: ['keep_*', 'old'], exclude: ['keep_secret*'], edit: { old: { name: 'keep_new', fixed: { tenant: 't1' }, defaults: { limit: 5 } } } },
      resources: { exclude: ['file:///private/*'] },
      prompts: { include: ['p*'] },
    }),
  );

  it('maps each published tool to one upstream tool and back; the rest is hidden', () => {
    assert.equal(c.publishedTool('old'), 'keep_new');
    assert.equal(c.upstreamTool('keep_new'), 'old');
    assert.equal(c.upstreamTool('old'), undefined, 'the upstream name of a renamed tool');
    assert.equal(c.publishedTool('keep_new'), undefined, 'an upstream tool whose name a renamed one took');
    assert.equal(c.upstreamTool('keep_a'), 'keep_a');
    assert.equal(c.upstreamTool('keep_secret_x'), undefined, 'exclude wins');
    assert.equal(c.upstreamTool('other'), undefined, 'not included');
  });

  it('hides resources as a URL parser reads them, and prompts by name', () => {
    assert.equal(c.shows('resources', 'file:///private/a'), false);
    assert.equal(c.shows('resources', 'FILE:///private/a'), false);
    assert.equal(c.shows('resources', 'file:///public/../private/a'), false);
    assert.equal(c.shows('resources', 'file:///public/a'), true);
    assert.equal(c.shows('prompts', 'plan'), true);
    assert.equal(c.shows('prompts', 'other'), false);
  });

  it('writes a call in the upstream terms: its name, the fixed arguments over the caller, the defaults under', () => {
    const call = (args: unknown) => c.plan([envelope({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'keep_new', arguments: args } })])!.messages[0]!.params;
    assert.deepEqual(call({ q: 'x' }), { name: 'old', arguments: { limit: 5, q: 'x', tenant: 't1' } });
    assert.deepEqual(call({ tenant: 'evil', limit: 9 }), { name: 'old', arguments: { limit: 9, tenant: 't1' } });
    assert.deepEqual(call('not an object'), { name: 'old', arguments: { limit: 5, tenant: 't1' } });
  });

  it('swaps a hidden name for a stand-in and puts it back (masks); leaves a published one alone', () => {
    const plan = c.plan([
      envelope({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'old', arguments: {} } }),
      envelope({ jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'file:///private/a' } }),
      envelope({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'keep_a', arguments: {} } }),
    ])!;
    assert.match(plan.messages[0]!.params!.name as string, /^mcpgw-hidden-[0-9a-f]{18}$/);
    assert.match(plan.messages[1]!.params!.uri as string, /^mcpgw-hidden-[0-9a-f]{18}:unknown$/);
    assert.equal(plan.messages[2]!.params!.name, 'keep_a');
    assert.deepEqual(plan.masks.map(([, real]) => real), ['old', 'file:///private/a']);
    assert.equal(c.plan([envelope({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'keep_a', arguments: {} } })]), undefined, 'nothing to do: no plan');
  });

  it('publishes a list page: hidden tools out, names, schema and annotations edited', () => {
    const page = c.items(LISTS['tools/list']!, [
      { name: 'old', inputSchema: { type: 'object', properties: { tenant: { type: 'string' }, limit: { type: 'number' }, q: { type: 'string' } }, required: ['tenant', 'limit', 'q'] } },
      { name: 'keep_new', inputSchema: { type: 'object' } },
      { name: 'keep_a', inputSchema: { type: 'object' } },
      { name: 'other', inputSchema: { type: 'object' } },
    ]);
    assert.deepEqual(page, [
      { name: 'keep_new', inputSchema: { type: 'object', properties: { limit: { type: 'number', default: 5 }, q: { type: 'string' } }, required: ['q'] } },
      { name: 'keep_a', inputSchema: { type: 'object' } },
    ]);
    assert.equal(c.items(LISTS['tools/list']!, [{ name: 'keep_a' }]), undefined, 'a page published as it came');
  });
});

describe('curation of an SSE answer', () => {
  it('filters a list whose stream ends its lines with CR alone, or begins with a BOM (as SSE allows, and as the hub reads and relays it)', async () => {
    const c = new Curation(curationOf({ tools: { exclude: ['secret'] } }));
    const plan = c.plan([envelope({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} })])!;
    const answer = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'secret', inputSchema: {} }, { name: 'open', inputSchema: {} }] } });
    for (const [start, end] of [['id: 1', '\r'], ['id: 1', '\r\n'], ['id: 1', '\n'], ['\ufeff', '\n']] as const) {
      const body = Readable.from([Buffer.from(`${start}${start.startsWith('id') ? end : ''}data: ${answer}${end}${end}`)]);
      const res = await rewriteAnswer({ status: 200, headers: { 'content-type': 'text/event-stream' }, body }, plan);
      let text = '';
      for await (const chunk of res.body as Readable) text += String(chunk);
      assert.ok(text.includes('"open"'), JSON.stringify(text));
      assert.ok(!text.includes('"secret"'), `start ${JSON.stringify(start)}, line end ${JSON.stringify(end)}: ${JSON.stringify(text)}`);
    }
  });

  it('filters a list whose data lines cut a JSON string (the hub joins them without the line ends and relays the list)', async () => {
    const c = new Curation(curationOf({ tools: { exclude: ['secret'] } }));
    const plan = c.plan([envelope({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} })])!;
    const answer = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'secret', inputSchema: {} }, { name: 'open', inputSchema: {} }] } });
    const cut = answer.indexOf('secret') + 3;
    const body = Readable.from([Buffer.from(`data: ${answer.slice(0, cut)}\ndata:${answer.slice(cut)}\n\n`)]);
    const res = await rewriteAnswer({ status: 200, headers: { 'content-type': 'text/event-stream' }, body }, plan);
    let text = '';
    for await (const chunk of res.body as Readable) text += String(chunk);
    assert.ok(text.includes('"open"'), JSON.stringify(text));
    assert.ok(!/sec\n?(data:)?ret/.test(text), JSON.stringify(text));
  });
});

describe('name patterns', () => {
  /** What a `*` pattern meant as a regular expression (the old matcher): the oracle. */
  const oracle = (glob: string) => new RegExp(`^${glob.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 's');

  it('match as the regular expression did (every pattern and name over a small alphabet)', () => {
    const words = ['', 'a', 'b', 'ab', 'ba', 'aa', 'aba', 'bab', 'abab', 'a.b', 'a\nb', 'aab'];
    const globs = ['*', '**', 'a', 'a*', '*a', '*a*', 'a*b', 'a*a', '*ab*', 'a*b*a', '*b*b*', 'ab*ab', 'a**b', '.', 'a.b', '*.*', 'a*a*a'];
    for (const glob of globs) {
      const p = globPattern(glob);
      for (const w of words) assert.equal(p.test(w), oracle(glob).test(w), `${JSON.stringify(glob)} on ${JSON.stringify(w)}`);
    }
  });

  it('take linear time on a long name that almost matches (the regular expression backtracked for minutes, the event loop blocked)', () => {
    // Run apart, so a matcher that hangs is killed instead of hanging the test run.
    const code = `import { globPattern } from ${JSON.stringify(new URL('../../src/config/curation.ts', import.meta.url).href)};
      const uri = 'file:///' + '/private/'.repeat(200000);
      if (globPattern('file:///*/private/*.txt').test(uri) || globPattern('*_*_*_*_x').test('_'.repeat(100000))) process.exit(2);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { timeout: 60_000, encoding: 'utf8' });
    assert.equal(r.signal, null, 'killed: still matching after a minute');
    assert.equal(r.status, 0, r.stderr);
  });
});
