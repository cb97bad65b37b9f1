import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { configHash, liveConfig, planReload } from '../../src/config/reload.ts';
import type { GatewayConfig } from '../../src/config/types.ts';

const SECRET = 'reload-secret-0123456789-abcdefghijklmnop';
const base = {
  session: { secret: SECRET },
  servers: {
    a: { upstreams: [{ url: 'http://127.0.0.1:3001/mcp' }] },
    b: { upstreams: [{ url: 'http://127.0.0.1:3002/mcp' }] },
    both: { compose: ['a', 'b'] },
  },
};
type Doc = Record<string, unknown>;
const load = (doc: Doc) => loadConfig({ document: doc, env: {} });
const config = (doc: Doc): GatewayConfig => load(doc).config;
const withServer = (name: string, server: unknown): Doc => ({ ...base, servers: { ...base.servers, [name]: server } });

describe('reload plan', () => {
  const running = config(base);

  const cases: { name: string; next: Doc; expect: Partial<Record<'kept' | 'added' | 'removed' | 'rebuilt' | 'changed', string[]>> }[] = [
    { name: 'the same file changes nothing', next: base, expect: {} },
    { name: 'a listen port is kept', next: { ...base, listen: { port: 9999 } }, expect: { kept: ['listen'] } },
    { name: 'the session key is kept', next: { ...base, session: { secret: `${SECRET}-new` } }, expect: { kept: ['session.secret'] } },
    { name: 'redis is kept', next: { ...base, redis: { url: 'redis://127.0.0.1:1/0' } }, expect: { kept: ['redis'] } },
    { name: 'a server added', next: withServer('c', { upstreams: [{ url: 'http://127.0.0.1:3003/mcp' }] }), expect: { added: ['c'] } },
    { name: 'a server removed', next: { ...base, servers: { a: base.servers.a } }, expect: { removed: ['b', 'both'] } },
    { name: 'a policy or time limit change keeps the pool', next: withServer('a', { ...base.servers.a, timeout: { idle: '1m' }, cache: { ttl: '1m' } }), expect: { changed: ['a'] } },
    { name: "a tool's own limits change keeps the pool", next: withServer('a', { ...base.servers.a, tools: { search: { timeout: { idle: '5s' }, concurrency: 2 } } }), expect: { changed: ['a'] } },
    { name: 'a new replica list rebuilds the pool, and the virtual server over it', next: withServer('a', { upstreams: [{ url: 'http://127.0.0.1:3009/mcp' }] }), expect: { rebuilt: ['a', 'both'] } },
    { name: 'a pool limit rebuilds the pool', next: withServer('b', { ...base.servers.b, maxFails: 9 }), expect: { rebuilt: ['b', 'both'] } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const plan = planReload(running, config(c.next));
      for (const key of ['kept', 'added', 'removed', 'rebuilt', 'changed'] as const) assert.deepEqual(plan[key], c.expect[key] ?? [], key);
      assert.equal(plan.differs, Object.keys(c.expect).length > 0);
    });
  }

  it('the same file with curation and per-item auth patterns changes nothing (a pattern is compared by what it matches)', () => {
    const curated = {
      ...base,
      auth: { mode: 'jwt', issuer: 'https://idp.test/', jwksUri: 'https://idp.test/jwks', audience: 'x' },
      servers: { ...base.servers, a: { ...base.servers.a, curation: { tools: { include: ['*'], exclude: ['admin_*', 'whoami'] } }, auth: { tools: { 'delete_*': { scopes: ['admin'] } } } } },
    };
    const plan = planReload(config(curated), config(curated));
    for (const key of ['kept', 'added', 'removed', 'rebuilt', 'changed'] as const) assert.deepEqual(plan[key], [], key);
    assert.equal(plan.differs, false);
    const other = planReload(config(curated), config({ ...curated, servers: { ...curated.servers, a: { ...curated.servers.a, curation: { tools: { include: ['*'], exclude: ['admin_*', 'whoam*'] } } } } }));
    assert.deepEqual(other.rebuilt, ['a', 'both'], 'another pattern is a change');
  });

  it('refuses a change of auth.mode (the policies were resolved for it)', () => {
    const next = config({ ...base, auth: { mode: 'jwt', issuer: 'https://idp.test/', jwksUri: 'https://idp.test/jwks', audience: 'x' } });
    assert.throws(() => planReload(running, next), /config key auth\.mode cannot change without a restart/);
  });

  it('keeps the running value of what cannot change, and takes the rest', () => {
    const next = config({ ...base, listen: { port: 9999 }, session: { secret: `${SECRET}-new`, maxLifetime: '1h' }, log: { level: 'debug' } });
    const plan = planReload(running, next);
    assert.equal(plan.config.listen, running.listen);
    assert.equal(plan.config.session.secret, SECRET);
    assert.equal(plan.config.session.maxLifetimeMs, 3_600_000);
    assert.equal(plan.config.log.level, 'debug');
  });

  it('the hash ignores key order and secret values, and follows everything else', () => {
    const h = configHash(load(base).effective);
    assert.match(h, /^[0-9a-f]{16}$/);
    assert.equal(configHash(load({ servers: base.servers, session: base.session }).effective), h);
    assert.equal(configHash(load({ ...base, session: { secret: `${SECRET}-new` } }).effective), h, 'a secret is not in the label');
    assert.notEqual(configHash(load(withServer('c', { upstreams: [{ url: 'http://127.0.0.1:3003/mcp' }] })).effective), h);
  });

  it('the live view reads the configuration of the moment', () => {
    let now = running;
    const live = liveConfig(() => now);
    assert.deepEqual(Object.keys(live.servers), ['a', 'b', 'both']);
    now = config({ ...base, servers: { a: base.servers.a } });
    assert.deepEqual(Object.keys(live.servers), ['a']);
  });
});
