import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/errors.ts';

const up = (url = 'http://127.0.0.1:3001/mcp') => ({ upstreams: [{ url }] });
const load = (servers: Record<string, unknown>) => loadConfig({ document: { servers }, env: {} }).config;

describe('config: virtual servers and legacy upstreams', () => {
  it('resolves compose members and transport: sse', () => {
    const config = load({ a: up(), old: { upstreams: [{ url: 'http://127.0.0.1:3002/sse', transport: 'sse' }] }, all: { compose: ['a', 'old'] } });
    assert.deepEqual(config.servers.all!.compose, ['a', 'old']);
    assert.deepEqual(config.servers.all!.upstreams, []);
    assert.equal(config.servers.old!.upstreams[0]!.kind, 'sse');
    assert.equal(config.servers.a!.upstreams[0]!.kind, 'http');
    assert.equal(config.servers.a!.compose, undefined);
  });

  it('names the key of each mistake', () => {
    const table: [Record<string, unknown>, RegExp][] = [
      [{ all: { compose: ['nope'] } }, /servers\.all\.compose names "nope", which is not a server/],
      [{ all: { compose: ['all'] } }, /servers\.all\.compose names the server itself/],
      [{ a: up(), inner: { compose: ['a'] }, all: { compose: ['inner'] } }, /itself a virtual server/],
      [{ a: up(), a_: up(), all: { compose: ['a', 'a_'] } }, /members "a" and "a_" would collide/],
      [{ a: up(), all: { compose: ['a'], upstreams: [{ url: 'http://x/mcp' }] } }, /servers\.all needs exactly one of "upstreams" or "compose"/],
      [{ all: {} }, /servers\.all\.upstreams is required \(or "compose"/],
      [{ s: { upstreams: [{ command: 'x', transport: 'sse' }] } }, /servers\.s\.upstreams\[0\]\.transport is not allowed for a command/],
      [{ s: { upstreams: [{ url: 'http://x/sse', transport: 'sse' }, { url: 'http://y/mcp' }] } }, /mixes transport: sse and url upstreams/],
      [{ s: { upstreams: [{ url: 'http://x/sse', transport: 'websocket' }] } }, /servers\.s\.upstreams\[0\]\.transport must be equal to one of the allowed values/],
    ];
    for (const [servers, message] of table) {
      assert.throws(() => load(servers), (err: unknown) => err instanceof ConfigError && message.test(err.message), JSON.stringify(servers));
    }
  });
});
