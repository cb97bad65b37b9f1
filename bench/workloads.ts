import { ClosedLoop, type Progress, type Slice } from './loop.ts';
import { McpHttpClient, type McpSession } from './mcp-client.ts';
import type { Row } from './report.ts';
import type { RunningScenario, Scenario, StartOptions, WorkloadKind } from './scenarios.ts';
import { endpointOf, resumeOnce } from './sse-client.ts';

/**
 * One thing the load generator does against a scenario's endpoint. A row of the report is a
 * (scenario, workload) pair; a workload that only makes sense for some scenarios says so.
 * Most workloads are `sliced`: a closed loop whose timed slices take turns with the other
 * scenarios'. A `once` workload (idle streams) starts fresh processes per scenario and measures
 * one state, so it runs scenario after scenario.
 */
export type Workload = SlicedWorkload | OnceWorkload;

interface WorkloadBase {
  readonly id: string;
  readonly title: string;
  readonly kind: WorkloadKind;
  /** Part of a run that does not name its workloads. */
  readonly byDefault: boolean;
  /** Workloads whose rows this one's are read against; a run that selects it runs them too. */
  readonly needs?: readonly string[];
  /** SSE workloads: progress notifications per op (each op's answer is one more event). */
  readonly progressPerOp?: number;
  appliesTo?(scenario: Scenario): boolean;
}

export interface SlicedWorkload extends WorkloadBase {
  readonly mode: 'sliced';
  /** Prepares the workload against a running scenario (opens its sessions); the driver then runs timed slices. */
  open(target: RunningScenario): Promise<WorkloadDriver>;
}

export interface OnceWorkload extends WorkloadBase {
  readonly mode: 'once';
  /** Starts the scenario's processes itself (with `start`), measures, stops them; one row. */
  run(ctx: OnceContext): Promise<Row>;
}

export interface OnceContext {
  readonly scenario: Scenario;
  start(opts: Partial<StartOptions>): Promise<RunningScenario>;
  readonly progress: Progress;
  /** How long to hold the measured state (the run's timed seconds). */
  readonly holdMs: number;
}

export interface WorkloadDriver {
  /** `warmupMs` unrecorded, then `measureMs` recorded (0: warm only), charging CPU to `pids`. */
  slice(warmupMs: number, measureMs: number, pids: Readonly<Record<string, number>>, progress: Progress): Promise<Slice>;
  close(): Promise<void>;
}

/** tools/call echo as every workload (and bench/hop.ts) sends it, and what its answer holds. */
export const ECHO_PARAMS = '{"name":"echo","arguments":{"text":"bench"}}';
export const ECHO_RESULT = '"text":"bench"';
const README_PARAMS = '{"uri":"demo://readme"}';
const README_TEXT = 'served by the demo upstream';
/** `sse-spaced`: the upstream's pause between progress events. */
const SPACED_DELAY_MS = 1;
/** Progress steps of the resumed request (the replay's length). */
const RESUME_STEPS = 10;
/** A resumed stream is produced afresh this often: the log keeps an answered stream `events.endedTtl` (1 min). */
const RESUME_REFRESH_MS = 15_000;
const RESUME_TIMEOUT_MS = 10_000;
/**
 * Finished streams each virtual user resumes in turn. The SDK upstream refuses (409) a resumption
 * of a stream whose previous resumption's connection it has not seen close yet; taking turns
 * leaves it time to.
 */
const RESUME_STREAMS = 4;

const demoOnly = (s: Scenario) => s.upstream === 'demo';
/** The result cache changes nothing for streams and sessions: those rows would repeat `gateway`'s. */
const noCache = (s: Scenario) => s.hop !== 'gateway-cache';

function slowCountParams(steps: number, delayMs = 0): (id: number) => string {
  return (id) => `{"name":"slow_count","arguments":{"count":${steps},"delayMs":${delayMs}},"_meta":{"progressToken":${id}}}`;
}

/** Wraps a closed loop over an MCP client as a sliced workload's driver. */
async function loopDriver<S>(client: McpHttpClient, open: () => Promise<ClosedLoop<S>>): Promise<WorkloadDriver> {
  let loop: ClosedLoop<S>;
  try {
    loop = await open();
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
}

interface RequestSpec {
  id: string;
  title: string;
  kind: WorkloadKind;
  method: string;
  params: string | ((id: number) => string);
  /** The answer (the whole body) is right. */
  check(body: string): boolean;
  appliesTo?: Workload['appliesTo'];
  byDefault?: boolean;
  needs?: readonly string[];
  progressPerOp?: number;
}

/** A closed loop of one request kind: one session per virtual user, requests back to back. */
function requestLoop(spec: RequestSpec, concurrency: number): SlicedWorkload {
  return {
    mode: 'sliced',
    id: `${spec.id}-c${concurrency}`,
    title: `${spec.title}, ${concurrency} concurrent session${concurrency === 1 ? '' : 's'}`,
    kind: spec.kind,
    byDefault: spec.byDefault ?? true,
    ...(spec.appliesTo ? { appliesTo: spec.appliesTo } : {}),
    ...(spec.needs ? { needs: spec.needs } : {}),
    ...(spec.progressPerOp ? { progressPerOp: spec.progressPerOp } : {}),
    open(target) {
      const client = new McpHttpClient(target.url, concurrency);
      return loopDriver(client, () =>
        ClosedLoop.open<McpSession>({
          concurrency,
          setup: () => client.open(),
          op: async (session) => {
            const res = await session.request(spec.method, spec.params);
            return res.status === 200 && spec.check(res.body);
          },
          teardown: (session) => session.end(),
        }),
      );
    },
  };
}

/** Closed-loop tools/call echo. */
export function toolsCall(concurrency: number): Workload {
  const check = (body: string) => body.includes('"result"') && body.includes(ECHO_RESULT);
  return requestLoop({ id: 'call', title: 'tools/call echo', kind: 'call', method: 'tools/call', params: ECHO_PARAMS, check }, concurrency);
}

/** Closed-loop resources/read of the demo's readme (a cache hit when the gateway caches it). */
export function resourceRead(concurrency: number, byDefault: boolean): Workload {
  // The raw upstream answers tools/call only.
  const check = (body: string) => body.includes('"result"') && body.includes(README_TEXT);
  return requestLoop({ id: 'read', title: 'resources/read', kind: 'read', method: 'resources/read', params: README_PARAMS, check, appliesTo: demoOnly, byDefault }, concurrency);
}

/**
 * Closed-loop tools/call `slow_count` with a progress token: `steps` progress notifications and
 * the answer on one SSE stream per call. Read against `call-c<N>` of the same scenario: (hop CPU
 * per call here − per plain call) ÷ steps is the hop's CPU per SSE event. With no delay (`sse`)
 * the upstream writes the events back to back and a hop reads several at once; `sse-spaced`
 * puts `delayMs` between them, so every event is read, logged and written on its own.
 */
export function sseProgress(concurrency: number, steps: number, delayMs: number, byDefault: boolean): Workload {
  const answer = `counted to ${steps}`;
  const check = (body: string) => body.includes(answer) && countOf(body, '"notifications/progress"') === steps;
  return requestLoop(
    {
      id: delayMs ? 'sse-spaced' : 'sse',
      title: `tools/call slow_count, ${steps} progress events per call${delayMs ? `, ${delayMs} ms apart` : ', back to back'}`,
      kind: 'sse',
      method: 'tools/call',
      params: slowCountParams(steps, delayMs),
      check,
      appliesTo: noCache,
      byDefault,
      needs: [`call-c${concurrency}`],
      progressPerOp: steps,
    },
    concurrency,
  );
}

function countOf(text: string, needle: string): number {
  let n = 0;
  for (let at = text.indexOf(needle); at !== -1; at = text.indexOf(needle, at + needle.length)) n++;
  return n;
}

/** Session churn: initialize → notifications/initialized → one tools/call → DELETE, back to back; one op is the whole cycle. */
export function sessionChurn(concurrency: number, byDefault: boolean): Workload {
  return {
    mode: 'sliced',
    id: `churn-c${concurrency}`,
    title: `session churn (initialize, initialized, tools/call, DELETE), ${concurrency} at a time`,
    kind: 'churn',
    byDefault,
    appliesTo: noCache,
    open(target) {
      const client = new McpHttpClient(target.url, concurrency);
      return loopDriver(client, () =>
        ClosedLoop.open<null>({
          concurrency,
          setup: async () => null,
          op: () => wholeSession(client),
        }),
      );
    },
  };
}

/** One whole session: initialize, notifications/initialized, tools/call echo, DELETE; true when the call's answer was right. */
export async function wholeSession(client: McpHttpClient): Promise<boolean> {
  const session = await client.open();
  const res = await session.request('tools/call', ECHO_PARAMS);
  const status = await session.delete();
  if (status < 200 || status > 299) throw new Error(`DELETE answered HTTP ${status}`);
  return res.status === 200 && res.body.includes(ECHO_RESULT);
}

interface ResumeState {
  readonly session: McpSession;
  readonly streams: { lastEventId: string; producedAt: number }[];
  next: number;
}

/**
 * Resume latency: a finished `slow_count` stream (its request already answered) is resumed with
 * `GET` + `Last-Event-ID` (its first event id) on a new connection, as a client whose connection
 * broke does; the latency is from sending the GET to the first replayed event. Against
 * `gateway-redis-peer` the stream was produced on one replica and is resumed on the other.
 */
export function resume(concurrency: number): Workload {
  const answer = `counted to ${RESUME_STEPS}`;
  return {
    mode: 'sliced',
    id: `resume-c${concurrency}`,
    title: `resume a finished stream with Last-Event-ID (${RESUME_STEPS + 1} events replayed), ${concurrency} at a time`,
    kind: 'resume',
    byDefault: true,
    appliesTo: (s) => demoOnly(s) && noCache(s),
    open(target) {
      const client = new McpHttpClient(target.url, concurrency);
      const resumeAt = endpointOf(target.peerUrl ?? target.url);
      const produce = async (session: McpSession) => {
        const res = await session.request('tools/call', slowCountParams(RESUME_STEPS));
        const id = /^id: ?(\S+)$/m.exec(res.body)?.[1];
        if (res.status !== 200 || !id || !res.body.includes(answer)) throw new Error(`the stream to resume failed: HTTP ${res.status}${id ? '' : ', no event ids'}`);
        return { lastEventId: id, producedAt: performance.now() };
      };
      return loopDriver(client, () =>
        ClosedLoop.open<ResumeState>({
          concurrency,
          setup: async () => {
            const session = await client.open();
            const streams = [];
            for (let i = 0; i < RESUME_STREAMS; i++) streams.push(await produce(session));
            return { session, streams, next: 0 };
          },
          op: async (state) => {
            const i = state.next++ % RESUME_STREAMS;
            if (performance.now() - state.streams[i]!.producedAt > RESUME_REFRESH_MS) state.streams[i] = await produce(state.session);
            const ms = await resumeOnce(resumeAt, state.session.id, state.streams[i]!.lastEventId, answer, RESUME_TIMEOUT_MS);
            return { ok: true, ms };
          },
          teardown: (state) => state.session.end(),
        }),
      );
    },
  };
}

/**
 * The workload table, in run order. `concurrency` makes the call-cN and read-cN workloads; the
 * SSE and churn workloads use its first entry (SSE is read against call-c<that>), resume runs
 * one at a time. Idle streams come last: they start processes of their own.
 */
export function workloadTable(opts: { concurrency: readonly number[]; sseSteps: number; idle: Workload }): Workload[] {
  const c = opts.concurrency[0]!;
  return [
    ...opts.concurrency.map(toolsCall),
    ...opts.concurrency.map((n) => resourceRead(n, n === c)),
    sseProgress(c, opts.sseSteps, 0, true),
    sseProgress(c, opts.sseSteps, SPACED_DELAY_MS, true),
    ...[...new Set([c, 1])].map((n) => sessionChurn(n, n === c)),
    resume(1),
    opts.idle,
  ];
}
