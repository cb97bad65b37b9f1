import { ClosedLoop, type Progress, type Slice } from './loop.ts';
import { McpHttpClient, type McpSession } from './mcp-client.ts';
import type { Scenario } from './scenarios.ts';

/**
 * One thing the load generator does against a scenario's endpoint. A row of the report is a
 * (scenario, workload) pair; a workload that only makes sense for some scenarios says so.
 * One op is one HTTP request for every workload so far, so the report calls op/s "req/s".
 */
export interface Workload {
  readonly id: string;
  readonly title: string;
  appliesTo?(scenario: Scenario): boolean;
  /** Prepares the workload against `url` (opens its sessions); the driver then runs timed slices. */
  open(url: string): Promise<WorkloadDriver>;
}

export interface WorkloadDriver {
  /** `warmupMs` unrecorded, then `measureMs` recorded (0: warm only), charging CPU to `pids`. */
  slice(warmupMs: number, measureMs: number, pids: Readonly<Record<string, number>>, progress: Progress): Promise<Slice>;
  close(): Promise<void>;
}

const ECHO_PARAMS = '{"name":"echo","arguments":{"text":"bench"}}';
const ECHO_RESULT = '"text":"bench"';
const README_PARAMS = '{"uri":"demo://readme"}';
const README_TEXT = 'served by the demo upstream';

/** A closed loop of one request kind: one session per virtual user, requests back to back. */
function requestLoop(spec: { id: string; title: string; method: string; params: string; expect: string; appliesTo?: Workload['appliesTo'] }, concurrency: number): Workload {
  return {
    id: `${spec.id}-c${concurrency}`,
    title: `${spec.title}, ${concurrency} concurrent session${concurrency === 1 ? '' : 's'}`,
    ...(spec.appliesTo ? { appliesTo: spec.appliesTo } : {}),
    async open(url) {
      const client = new McpHttpClient(url, concurrency);
      let loop: ClosedLoop<McpSession>;
      try {
        loop = await ClosedLoop.open<McpSession>({
          concurrency,
          setup: () => client.open(),
          op: async (session) => {
            const res = await session.request(spec.method, spec.params);
            return res.status === 200 && res.body.includes('"result"') && res.body.includes(spec.expect);
          },
          teardown: (session) => session.end(),
        });
      } catch (err) {
        await client.close();
        throw err;
      }
      return {
        slice: (warmupMs, measureMs, pids, progress) => loop.slice(warmupMs, measureMs, pids, progress),
        close: async () => {
          await loop.close();
          await client.close();
        },
      };
    },
  };
}

/** Closed-loop tools/call echo. */
export function toolsCall(concurrency: number): Workload {
  return requestLoop({ id: 'call', title: 'tools/call echo', method: 'tools/call', params: ECHO_PARAMS, expect: ECHO_RESULT }, concurrency);
}

/** Closed-loop resources/read of the demo's readme (a cache hit when the gateway caches it). */
export function resourceRead(concurrency: number): Workload {
  // The raw upstream answers tools/call only.
  const appliesTo = (scenario: Scenario) => scenario.upstream === 'demo';
  return requestLoop({ id: 'read', title: 'resources/read', method: 'resources/read', params: README_PARAMS, expect: README_TEXT, appliesTo }, concurrency);
}

/** The workload table; later workloads (SSE progress, session churn, idle streams) join here. */
export function workloadTable(opts: { concurrency: readonly number[] }): Workload[] {
  return [...opts.concurrency.map(toolsCall), ...opts.concurrency.map(resourceRead)];
}
