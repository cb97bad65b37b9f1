import assert from 'node:assert/strict';
import { it } from 'node:test';
import { RequestGate } from '../../src/upstream/gate.ts';

it('request gate: at most `size` at once, waiters served in order, a waiter that gives up leaves the line', async () => {
  const gate = new RequestGate(1);
  const first = await gate.acquire(1_000);
  assert.ok(first);
  const order: string[] = [];
  const abort = new AbortController();
  const a = gate.acquire(1_000).then((r) => (order.push('a'), r));
  const gone = gate.acquire(1_000, abort.signal);
  const timedOut = gate.acquire(10);
  const b = gate.acquire(1_000).then((r) => (order.push('b'), r));
  abort.abort();
  assert.equal(await gone, false, 'an aborted waiter gets no slot');
  assert.equal(await timedOut, false, 'a waiter past its time gets no slot');
  assert.deepEqual(gate.load, { busy: 1, waiting: 2 });
  first();
  first(); // a second release of the same slot changes nothing
  const ra = await a;
  assert.ok(ra);
  assert.deepEqual(gate.load, { busy: 1, waiting: 1 });
  ra();
  const rb = await b;
  assert.ok(rb);
  rb();
  assert.deepEqual(order, ['a', 'b']);
  assert.deepEqual(gate.load, { busy: 0, waiting: 0 });
});
