/**
 * What the single-hop tools (alloc.ts, gc.ts) share: the scenario they are pointed at (one with a
 * single hop: gateway or bare undici hop) and `tools/call echo` calls back to back.
 */
import type { McpSession } from './mcp-client.ts';
import { SCENARIOS, type Scenario } from './scenarios.ts';
import { ECHO_PARAMS, ECHO_RESULT } from './workloads.ts';

/** The scenario `id`, if it has a single hop; else the usage line and exit 2. */
export function singleHopScenario(id: string | undefined): Scenario {
  const found = SCENARIOS.find((s) => s.id === id);
  if (found && found.hop !== 'none' && found.hop !== 'gateway-redis-pair') return found;
  console.error(`--scenario: one with a single hop (${SCENARIOS.filter((s) => s.hop !== 'none' && s.hop !== 'gateway-redis-pair').map((s) => s.id).join(', ')})`);
  process.exit(2);
}

/** `n` calls in all, `sessions.length` at a time; every answer is checked. */
export async function echoCalls(sessions: readonly McpSession[], n: number): Promise<void> {
  let left = n;
  await Promise.all(
    sessions.map(async (s) => {
      while (left-- > 0) {
        const res = await s.request('tools/call', ECHO_PARAMS);
        if (res.status !== 200 || !res.body.includes(ECHO_RESULT)) throw new Error(`tools/call answered HTTP ${res.status}: ${res.body.slice(0, 200)}`);
      }
    }),
  );
}
