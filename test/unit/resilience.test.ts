import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonical, ResultCache, usable } from '../../src/cache/result-cache.ts';
import { MemoryCacheStore } from '../../src/cache/store.ts';
import { GatewayError } from '../../src/errors.ts';
import { Deadline } from '../../src/resilience/deadline.ts';
import { gcra, MemoryRateLimiter } from '../../src/resilience/limiter.ts';
import { backoffMs, isTransient, RetryBudget } from '../../src/resilience/retry.ts';
import { ToolHints } from '../../src/resilience/tool-hints.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('retries', () => {
  it('treats only failures before a response as transient', () => {
    const wrapped = (code: string) => new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', 'x', { cause: Object.assign(new Error('socket'), { code }) });
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE']) assert.equal(isTransient(wrapped(code)), true, code);
    assert.equal(isTransient(new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'unreachable', { cause: { cause: { code: 'ECONNREFUSED' } } })), true, 'nested cause');
    assert.equal(isTransient(wrapped('UND_ERR_HEADERS_TIMEOUT')), false, 'a timeout may have run it');
    assert.equal(isTransient(new GatewayError('MCPGW_ERR_SESSION_NOT_FOUND', 'the upstream ended it')), false);
    assert.equal(isTransient(Object.assign(new Error('x'), { code: 'ECONNRESET' })), false, 'only errors of the upstream call');
  });

  it('backs off exponentially with full jitter, capped', () => {
    assert.equal(backoffMs(1, 100, 2_000, () => 0.999), 99);
    assert.equal(backoffMs(3, 100, 2_000, () => 0.5), 200);
    assert.equal(backoffMs(10, 100, 2_000, () => 0.999), 1_998);
    assert.equal(backoffMs(2, 100, 2_000, () => 0), 0);
  });

  it('budget: a share of requests plus a trickle per second, capped', () => {
    const b = new RetryBudget(0.2, 0, 0);
    assert.equal(b.withdraw(0), false, 'nothing to spend yet');
    for (let i = 0; i < 10; i++) b.deposit(0);
    assert.equal(b.withdraw(0), true);
    assert.equal(b.withdraw(0), true);
    assert.equal(b.withdraw(0), false, '20% of 10 requests is 2 retries');
    const t = new RetryBudget(0, 2, 0);
    assert.equal(t.withdraw(0), true);
    assert.equal(t.withdraw(0), true);
    assert.equal(t.withdraw(0), false);
    assert.equal(t.withdraw(500), true, 'one more after half a second at 2/s');
    assert.equal(new RetryBudget(0, 2, 0).withdraw(3_600_000) && true, true);
    const capped = new RetryBudget(0, 2, 0);
    let n = 0;
    while (capped.withdraw(3_600_000)) n++;
    assert.equal(n, 20, 'at most ten seconds worth');
  });
});

describe('deadline', () => {
  it('expires when idle, and activity keeps it going until the hard maximum', async () => {
    const fired: string[] = [];
    const idle = new Deadline(60, 10_000, (r) => fired.push(`idle:${r}`));
    await sleep(120);
    assert.deepEqual(fired, ['idle:idle']);
    assert.equal(idle.active, false);

    const touched = new Deadline(80, 300, (r) => fired.push(`max:${r}`));
    const started = Date.now();
    while (Date.now() - started < 450 && touched.active) {
      touched.touch();
      await sleep(20);
    }
    assert.deepEqual(fired, ['idle:idle', 'max:max']);
    assert.ok(Date.now() - started >= 280, 'activity carried it past the idle limit');

    const cleared = new Deadline(30, 30, () => fired.push('cleared'));
    cleared.clear();
    await sleep(60);
    assert.equal(fired.length, 2);
  });
});

describe('rate limits: GCRA', () => {
  it('lets N through at once, then one per period/N; cost counts several', () => {
    const rule = { requests: 4, periodMs: 1_000 };
    let tat = 0;
    for (let i = 0; i < 4; i++) {
      const step = gcra(tat, 10_000, rule, 1);
      assert.ok('tat' in step);
      tat = step.tat;
    }
    assert.deepEqual(gcra(tat, 10_000, rule, 1), { retryAfterMs: 250 });
    assert.ok('tat' in gcra(tat, 10_250, rule, 1));
    assert.deepEqual(gcra(0, 10_000, rule, 5), { retryAfterMs: 250 }, 'five at once do not fit in four');
    const limiter = new MemoryRateLimiter();
    const check = { key: 'k', rule, cost: 2, scope: 'tool' as const };
    assert.deepEqual(limiter.takeNow([check], 0), { ok: true });
    assert.deepEqual(limiter.takeNow([check], 0), { ok: true });
    assert.deepEqual(limiter.takeNow([check], 0), { ok: false, scope: 'tool', retryAfterMs: 500 });
  });
});

describe('cache keys', () => {
  it('canonical params: keys sorted at every level, _meta dropped at the top only', () => {
    assert.equal(canonical({ b: 1, a: { d: [2, { y: 1, x: 0 }], c: null }, _meta: { progressToken: 1 } }, true), '{"a":{"c":null,"d":[2,{"x":0,"y":1}]},"b":1}');
    assert.equal(canonical({ a: { _meta: 1 } }, true), '{"a":{"_meta":1}}');
    assert.equal(canonical(undefined, true), '{}');
    assert.equal(canonical({}, true), '{}');
  });

  it('caches reads with a URI and the lists; never a result that depends on input responses', () => {
    assert.equal(ResultCache.cacheable('resources/read', { uri: 'x' }), true);
    assert.equal(ResultCache.cacheable('resources/read', {}), false);
    assert.equal(ResultCache.cacheable('tools/list', undefined), true);
    assert.equal(ResultCache.cacheable('resources/templates/list', { cursor: 'c' }), true);
    assert.equal(ResultCache.cacheable('tools/call', { name: 'x' }), false);
    assert.equal(ResultCache.cacheable('prompts/get', { name: 'x' }), false);
    assert.equal(ResultCache.cacheable('resources/read', { uri: 'x', inputResponses: {} }), false);
    assert.equal(ResultCache.cacheable('tools/list', { requestState: 's' }), false);
  });
});

it('the memory store holds at most maxBytes of text: lists with made-up params, each a new entry, cannot fill the heap', async () => {
  const store = new MemoryCacheStore(10_000, 1_000_000);
  const cache = new ResultCache(store, '');
  const big = JSON.stringify({ tools: [{ name: 'x', description: 'd'.repeat(50_000) }] });
  for (let i = 0; i < 200; i++) {
    const miss = await cache.lookup({ server: 's', method: 'tools/list', params: { junk: i }, protocolVersion: 'v', context: 'c', perUser: false });
    await cache.store(miss, big, 'public', 60_000);
    assert.ok(store.chars <= 1_000_000, `${store.chars} characters held after ${i + 1} lists`);
  }
  const last = await cache.lookup({ server: 's', method: 'tools/list', params: { junk: 199 }, protocolVersion: 'v', context: 'c', perUser: false });
  assert.equal(last.hit, big, 'the newest entries are kept');
});

it('single flight: waiters share the fetch of their entry; a private result only with its own context; a stuck fetch is given up', async () => {
  const cache = new ResultCache(new MemoryCacheStore(100, 1024 * 1024), '');
  const q = { server: 's', method: 'resources/read', params: { uri: 'u' }, protocolVersion: 'v', perUser: false };
  const alice = await cache.lookup({ ...q, context: 'alice' });
  const bob = await cache.lookup({ ...q, context: 'bob' });
  assert.equal(cache.joined(alice), undefined);
  const settle = cache.lead(alice, 10_000);
  const waiting = cache.joined(bob);
  assert.ok(waiting, 'same entry, same stamp: one flight');
  settle({ result: '"r"', scope: 'private', context: 'alice' });
  const shared = await waiting;
  assert.equal(usable(shared, bob), undefined, "bob does not get alice's private result");
  assert.equal(usable(shared, alice), '"r"');
  assert.equal(cache.joined(alice), undefined, 'settled: gone');

  cache.lead(alice, 30);
  const stuck = cache.joined(bob)!;
  assert.equal(await stuck, undefined);
  assert.equal(cache.joined(alice), undefined);
});

it('tool hints: learned from tools/list, unknown tools are neither read-only nor idempotent', () => {
  const hints = new ToolHints();
  assert.equal(hints.knows('s'), false);
  hints.learn('s', { tools: [{ name: 'r', annotations: { readOnlyHint: true } }, { name: 'i', annotations: { idempotentHint: true } }, { name: 'w' }, { nope: 1 }] });
  assert.equal(hints.knows('s'), true);
  assert.deepEqual(hints.get('s', 'r'), { readOnly: true, idempotent: false });
  assert.deepEqual(hints.get('s', 'i'), { readOnly: false, idempotent: true });
  assert.deepEqual(hints.get('s', 'w'), { readOnly: false, idempotent: false });
  assert.deepEqual(hints.get('s', 'zzz'), { readOnly: false, idempotent: false });
  assert.deepEqual(hints.get('other', 'r'), { readOnly: false, idempotent: false }, 'per server');
  hints.learn('s', { tools: [{ name: 'r', annotations: { readOnlyHint: false } }] });
  assert.equal(hints.get('s', 'r').readOnly, false, 'the latest list wins');
});
