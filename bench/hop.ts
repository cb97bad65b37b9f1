/**
 * What the single-hop tools (alloc.ts, gc.ts) share: the scenario they are pointed at (one with a
 * single hop: gateway or bare undici hop) and what they drive through it — `tools/call echo` calls
 * back to back on open sessions, or whole sessions (`churn`: initialize, initialized, the call,
 * DELETE, as the bench's churn workload runs them).
 */
import { McpHttpClient, type McpSession } from './mcp-client.ts';
import { SCENARIOS, type Scenario } from './scenarios.ts';
import { ECHO_PARAMS, ECHO_RESULT, wholeSession } from './workloads.ts';

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

/** What a single-hop tool measures one op of: a call, or a whole session. */
export type HopWorkload = 'calls' | 'churn';

export interface HopDriver {
  /** What one op is, for the tools' output ("bytes per call", "per session"). */
  readonly unit: 'call' | 'session';
  /** `n` ops, `concurrency` at a time; every answer checked. */
  run(n: number): Promise<void>;
  close(): Promise<void>;
}

/** The `--workload` option's value checked, or the usage line and exit 2. */
export function hopWorkload(value: string | undefined): HopWorkload {
  if (value === 'calls' || value === 'churn') return value;
  console.error('--workload: calls (tools/call echo on open sessions) or churn (whole sessions)');
  process.exit(2);
}

export async function hopDriver(workload: HopWorkload, url: string, concurrency: number): Promise<HopDriver> {
  const client = new McpHttpClient(url, concurrency);
  if (workload === 'churn') {
    return {
      unit: 'session',
      run: async (n) => {
        let left = n;
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (left-- > 0) if (!(await wholeSession(client))) throw new Error('a whole session\'s tools/call answered wrong');
          }),
        );
      },
      close: () => client.close(),
    };
  }
  const sessions = await Promise.all(Array.from({ length: concurrency }, () => client.open()));
  return {
    unit: 'call',
    run: (n) => echoCalls(sessions, n),
    close: async () => {
      await Promise.all(sessions.map((s) => s.end()));
      await client.close();
    },
  };
}
