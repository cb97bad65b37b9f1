import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pickLeastLoaded, ReplicaState } from '../../src/upstream/replica.ts';

describe('least-connections balancer', () => {
  it('picks the replica with the fewest in-flight requests plus open streams', () => {
    const [a, b, c] = ['a', 'b', 'c'].map((k) => new ReplicaState(k, 3, 30_000)) as [ReplicaState, ReplicaState, ReplicaState];
    a.inflight = 2;
    b.streams = 1;
    c.inflight = 1;
    c.streams = 1;
    assert.equal(pickLeastLoaded([a, b, c], 0)?.key, 'b');
  });

  it('breaks ties between two random candidates by latency, never herding on one', () => {
    const replicas = ['a', 'b', 'c', 'd'].map((k) => new ReplicaState(k, 3, 30_000));
    const counts = new Map<string, number>();
    for (let i = 0; i < 4000; i++) {
      const r = pickLeastLoaded(replicas, 0)!;
      counts.set(r.key, (counts.get(r.key) ?? 0) + 1);
    }
    for (const k of ['a', 'b', 'c', 'd']) assert.ok((counts.get(k) ?? 0) > 700, `${k} got ${counts.get(k)}`);
    replicas[3]!.latencyMs = 1;
    replicas[0]!.latencyMs = replicas[1]!.latencyMs = replicas[2]!.latencyMs = 50;
    let fast = 0;
    for (let i = 0; i < 4000; i++) if (pickLeastLoaded(replicas, 0)!.key === 'd') fast++;
    assert.ok(fast > 1500 && fast < 2500, `the fastest wins every pair it is in (~1/2): ${fast}`);
  });

  it('ejects after maxFails failures within failTimeout, and back on probation after it', () => {
    const r = new ReplicaState('a', 3, 1_000);
    assert.equal(r.fail(0), false);
    assert.equal(r.fail(100), false);
    assert.equal(r.fail(200), true, 'third failure within the window ejects');
    assert.equal(r.available(500), false);
    assert.equal(pickLeastLoaded([r], 500), undefined);
    assert.equal(r.available(1_300), true, 'tried again after failTimeout');
    assert.equal(r.fail(1_400), true, 'one failure on probation ejects again');
    assert.equal(r.available(2_500), true);
    r.succeed(5);
    assert.equal(r.fail(2_600), false, 'a success ends probation');
  });

  it('forgets failures older than failTimeout', () => {
    const r = new ReplicaState('a', 3, 1_000);
    r.fail(0);
    r.fail(100);
    assert.equal(r.fail(5_000), false, 'the window restarted');
    assert.equal(r.fail(5_100), false);
    assert.equal(r.fail(5_200), true);
  });

  it('never ejects with maxFails 0', () => {
    const r = new ReplicaState('a', 0, 1_000);
    for (let i = 0; i < 10; i++) assert.equal(r.fail(i), false);
  });

  it('skips excluded replicas (retry of initialize elsewhere)', () => {
    const [a, b] = [new ReplicaState('a', 3, 1_000), new ReplicaState('b', 3, 1_000)];
    a.inflight = 0;
    b.inflight = 5;
    assert.equal(pickLeastLoaded([a, b], 0, new Set(['a']))?.key, 'b');
  });
});

it('does not herd idle ties onto a replica that is only a little faster', () => {
  const [a, b] = [new ReplicaState('a', 3, 1_000), new ReplicaState('b', 3, 1_000)];
  a.latencyMs = 2.0;
  b.latencyMs = 2.2;
  let picksB = 0;
  for (let i = 0; i < 2000; i++) if (pickLeastLoaded([a, b], 0)!.key === 'b') picksB++;
  assert.ok(picksB > 800 && picksB < 1200, `b got ${picksB} of 2000`);
});

it('reports each replica for metrics: load, and its breaker state (the ejection signal)', () => {
  const r = new ReplicaState('a', 1, 1_000);
  r.inflight = 2;
  r.streams = 3;
  assert.deepEqual(r.snapshot(0), { key: 'a', inflight: 2, streams: 3, load: 5, ejected: false, breaker: 'closed' });
  assert.equal(r.fail(100), true);
  assert.equal(r.snapshot(500).breaker, 'open');
  assert.equal(r.snapshot(500).ejected, true);
  // failTimeout over: on trial until it answers once.
  assert.equal(r.snapshot(1_200).breaker, 'half-open');
  r.inflight = 0;
  assert.equal(r.available(1_200), true);
  assert.equal(r.snapshot(1_200).breaker, 'half-open');
  r.succeed(5);
  assert.equal(r.snapshot(1_300).breaker, 'closed');
});

it('breaker: half-open admits one trial at a time; a failed trial opens it again at once', () => {
  const r = new ReplicaState('a', 3, 1_000);
  for (const t of [0, 10, 20]) r.fail(t);
  assert.equal(r.breaker(500), 'open');
  assert.equal(r.available(500), false);
  assert.equal(r.available(1_100), true, 'the ejection ran out: half-open');
  r.inflight = 1; // the trial request
  assert.equal(r.breaker(1_100), 'half-open');
  assert.equal(r.available(1_150), false, 'one trial at a time');
  assert.equal(pickLeastLoaded([r], 1_150), undefined);
  assert.equal(r.fail(1_200), true, 'the trial failed: open again, without waiting for maxFails');
  assert.equal(r.breaker(1_300), 'open');
  r.inflight = 0;
  assert.equal(r.available(2_300), true);
  r.succeed(3);
  assert.equal(r.breaker(2_300), 'closed');
  assert.equal(r.available(2_300), true);
});
