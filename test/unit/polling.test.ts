import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_POLL_WAIT_MS, PollSchedule } from '../../src/upstream/polling.ts';

/** Runs `steps` on a schedule made at t=0; each step says when, what, and (for `next`) the wait it must give. */
function run(limitMs: number | undefined, steps: readonly (readonly [number, 'retry' | 'opened' | 'message' | 'next', number?])[]): (number | undefined)[] {
  const s = new PollSchedule(limitMs, 0);
  const waits: (number | undefined)[] = [];
  for (const [at, what, arg] of steps) {
    if (what === 'retry') s.retry(arg!);
    else if (what === 'opened') s.opened(at);
    else if (what === 'message') s.message(at);
    else waits.push(s.next(at));
  }
  return waits;
}

describe('polling an upstream that ends a stream before its answer (SEP-1699)', () => {
  const cases: { name: string; limit?: number; steps: Parameters<typeof run>[1]; waits: (number | undefined)[] }[] = [
    { name: 'no retry: at once', steps: [[10, 'next']], waits: [0] },
    { name: "the upstream's retry", steps: [[0, 'retry', 5_000], [10, 'next']], waits: [5_000] },
    { name: 'a retry past the cap waits the cap', steps: [[0, 'retry', 60_000], [10, 'next']], waits: [MAX_POLL_WAIT_MS] },
    { name: 'a negative retry is none', steps: [[0, 'retry', -5], [10, 'next']], waits: [0] },
    {
      name: 'streams ended at once back off from the second on, doubling, to the cap',
      steps: [[0, 'retry', 50], [10, 'next'], [100, 'opened'], [110, 'next'], [400, 'opened'], [410, 'next'], [900, 'opened'], [910, 'next'], [2_000, 'opened'], [2_010, 'next']],
      waits: [50, 100, 200, 400, 800],
    },
    {
      name: 'a stream that stayed open a while is a real poll: no backoff',
      steps: [[10, 'next'], [20, 'opened'], [30, 'next'], [40, 'opened'], [5_000, 'next']],
      waits: [0, 100, 0],
    },
    {
      name: 'a message on streams ended at once does not stop the backoff (retry: 0 with one message per poll is no loop)',
      steps: [[10, 'next'], [20, 'opened'], [25, 'message'], [30, 'next'], [130, 'opened'], [135, 'message'], [140, 'next'], [340, 'opened'], [345, 'message'], [350, 'next']],
      waits: [0, 100, 200, 400],
    },
    {
      name: 'a message on a stream that stayed open starts over',
      steps: [[10, 'next'], [20, 'opened'], [30, 'next'], [40, 'opened'], [50, 'message'], [3_000, 'next']],
      waits: [0, 100, 0],
    },
    {
      name: 'the backoff never passes the cap',
      steps: Array.from({ length: 30 }, (_, i) => [[i * 100_000, 'opened'] as const, [i * 100_000 + 10, 'next'] as const]).flat(),
      waits: [0, 100, 200, 400, 800, 1_600, 3_200, 6_400, ...Array<number>(22).fill(MAX_POLL_WAIT_MS)],
    },
    { name: 'no poll past the limit without a message', limit: 1_000, steps: [[0, 'retry', 300], [500, 'next'], [800, 'opened'], [1_800, 'next']], waits: [300, undefined] },
    { name: 'a message moves the limit', limit: 1_000, steps: [[0, 'retry', 300], [900, 'message'], [1_000, 'next']], waits: [300] },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(run(c.limit, c.steps), c.waits));
});
