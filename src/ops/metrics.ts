import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Upstream } from '../upstream/types.ts';
import { serverStatus } from './health.ts';

/**
 * The gateway's Prometheus metrics, one registry per gateway instance. Every label is bounded:
 * methods come from a known set, servers and replicas from the configuration (replicas by their
 * public names, which never hold a URL's userinfo or query), reasons and outcomes
 * from the closed lists below, tool names only when `metrics.toolLabels` is on and then capped.
 * docs/observability.md documents each metric; a test checks it does.
 */

/** MCP methods that get their own label value; anything else is counted as "other". */
const KNOWN_METHODS = new Set([
  'initialize', 'ping', 'tools/list', 'tools/call', 'resources/list', 'resources/read', 'resources/templates/list',
  'resources/subscribe', 'resources/unsubscribe', 'prompts/list', 'prompts/get', 'completion/complete',
  'logging/setLevel', 'notifications/initialized', 'notifications/cancelled', 'notifications/progress',
  'notifications/roots/list_changed', 'server/discover', 'subscriptions/listen', 'tasks/get', 'tasks/list',
  'tasks/result', 'tasks/cancel',
]);

export function methodLabel(method: string | undefined): string {
  if (method === undefined) return 'response';
  return KNOWN_METHODS.has(method) ? method : 'other';
}

/** Methods the result cache may answer; their hit and miss series exist (at zero) from the start. */
export const CACHEABLE_METHODS = ['resources/read', 'resources/list', 'resources/templates/list', 'tools/list', 'prompts/list'] as const;

/**
 * How a `Last-Event-ID` resumption ended: `hit` replayed from the event log, `miss` the id was
 * unknown, `evicted` the id was older than what the log still holds, `upstream` the gateway asked
 * the upstream to resume.
 */
export const RESUME_OUTCOMES = ['hit', 'miss', 'evicted', 'upstream'] as const;
export type ResumeOutcome = (typeof RESUME_OUTCOMES)[number];

/** Why a caller was turned away by authentication or authorization. Extend here and in the docs. */
export const AUTH_FAILURE_REASONS = [
  'missing_token', 'malformed_token', 'bad_signature', 'unknown_key', 'disallowed_algorithm', 'expired',
  'not_yet_valid', 'wrong_issuer', 'wrong_audience', 'insufficient_scope', 'forbidden', 'session_principal_mismatch',
  'client_certificate',
] as const;
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number];

/** `status` of mcp_requests_total and mcp_tool_calls_total: what the client got. */
export const REQUEST_STATUSES = ['success', 'error'] as const;

/**
 * How a configuration reload (SIGHUP) ended: `applied` (something changed), `unchanged` (the file
 * says what runs), `refused` (the file is bad: the running configuration stays).
 */
export const RELOAD_OUTCOMES = ['applied', 'unchanged', 'refused'] as const;
export type ReloadOutcome = (typeof RELOAD_OUTCOMES)[number];

/** Which limit refused a call. */
export const RATE_LIMIT_SCOPES = ['principal', 'server', 'tool', 'concurrency'] as const;
export type RateLimitScope = (typeof RATE_LIMIT_SCOPES)[number];

/** Redis connections the gateway opens; a new one gets a name here. */
export type RedisConnection = 'command' | 'subscriber';
const REDIS_CONNECTIONS: readonly RedisConnection[] = ['command', 'subscriber'];

/** Breaker state as a number, ordered by severity so that `max` over gateways shows the worst. */
export const BREAKER_STATE = { closed: 0, 'half-open': 1, open: 2 } as const;

/** The tool label of calls past the `metrics.toolLabelLimit` distinct (server, tool) pairs. */
export const OTHER_TOOL = '_other';
/** MCP's longest tool name; a longer one names no tool and gets no label (nor a place under the cap). */
export const MAX_TOOL_LABEL = 128;

export interface MetricsOptions {
  /** Node's default process metrics (off in tests that run several gateways in one process). */
  readonly defaultMetrics?: boolean | undefined;
  /** Per-tool call metrics; tool names come from callers, so they are opt-in and capped. */
  readonly toolLabels?: boolean | undefined;
  readonly toolLabelLimit?: number | undefined;
}

type Child<T extends Counter<string> | Histogram<string>> = ReturnType<T['labels']>;

/**
 * One labelled series of a counter, counted here: prom-client hashes the labels on every `inc`,
 * even a child's, so the hot path bumps a number and the counter reads it when scraped.
 */
class CounterSeries {
  readonly labels: Partial<Record<string, string>>;
  count = 0;
  /** What the prom-client counter holds of `count` already. */
  reported = 0;

  constructor(labels: Partial<Record<string, string>>) {
    this.labels = labels;
  }
}

/** A prom-client Counter fed at scrape time from CounterSeries (made here, one per label set). */
class TalliedCounter<T extends string> {
  readonly counter: Counter<T>;
  readonly #series: CounterSeries[] = [];

  constructor(config: { name: string; help: string; labelNames: readonly T[]; registers: Registry[] }) {
    const series = this.#series;
    this.counter = new Counter<T>({
      ...config,
      collect() {
        for (const s of series) {
          if (s.count === s.reported) continue;
          this.inc(s.labels, s.count - s.reported);
          s.reported = s.count;
        }
      },
    });
  }

  /** A new series; the caller keeps it (the label sets are bounded by whoever asks). */
  series(labels: Partial<Record<T, string>>): CounterSeries {
    const s = new CounterSeries(labels);
    this.#series.push(s);
    return s;
  }
}

/** The series one request method feeds: made once per method label, so a request costs one lookup. */
interface MethodSeries {
  readonly success: CounterSeries;
  readonly failure: CounterSeries;
  readonly duration: Child<Histogram<'method'>>;
  /** HTTP status → its series. */
  readonly http: Map<number, CounterSeries>;
  /** error_type → its series. */
  readonly errors: Map<string, CounterSeries>;
}

/** A tool's series (with `metrics.toolLabels`); at most `toolLabelLimit` of them, plus `_other` per server. */
interface ToolSeries {
  readonly success: CounterSeries;
  readonly failure: CounterSeries;
  readonly duration: Child<Histogram<'server' | 'tool'>>;
}

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'status'>;
  readonly httpResponses: Counter<'method' | 'code'>;
  readonly duration: Histogram<'method'>;
  readonly activeConnections: Gauge;
  readonly errors: Counter<'error_type' | 'method'>;
  readonly cacheHits: Counter<'method'>;
  readonly cacheMisses: Counter<'method'>;
  readonly upstreamEjections: Counter<'server' | 'replica'>;
  readonly stdioProcesses: Gauge<'server'>;
  readonly resumes: Counter<'outcome'>;
  readonly eventLogAppendDuration: Histogram;
  readonly redisErrors: Counter<'connection'>;
  readonly authFailures: Counter<'reason'>;
  readonly rateLimited: Counter<'server' | 'scope'>;
  readonly configReloads: Counter<'outcome'>;
  readonly #configInfo: Gauge<'hash'>;
  /** Present only with `toolLabels`. */
  readonly toolCalls: Counter<'server' | 'tool' | 'status'> | undefined;
  readonly toolDuration: Histogram<'server' | 'tool'> | undefined;
  readonly #toolLabelLimit: number;
  readonly #tallied: { readonly requests: TalliedCounter<'method' | 'status'>; readonly http: TalliedCounter<'method' | 'code'>; readonly errors: TalliedCounter<'error_type' | 'method'>; readonly toolCalls?: TalliedCounter<'server' | 'tool' | 'status'> };
  readonly #byMethod = new Map<string, MethodSeries>();
  /** `server\0tool` → series, at most `toolLabelLimit`. */
  readonly #byTool = new Map<string, ToolSeries>();
  /** server → its `_other` tool series. */
  readonly #otherTool = new Map<string, ToolSeries>();
  readonly #cacheHitsByMethod = new Map<string, Child<Counter<'method'>>>();
  readonly #cacheMissesByMethod = new Map<string, Child<Counter<'method'>>>();
  #upstreams: ReadonlyMap<string, Upstream> = new Map();

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    const requests = new TalliedCounter({ name: 'mcp_requests_total', help: 'MCP requests by method and outcome as the client saw it (success or error)', labelNames: ['method', 'status'], registers });
    this.requests = requests.counter;
    // From zero, so a rate (and the tool-error alert) sees the first failure.
    for (const status of REQUEST_STATUSES) this.requests.inc({ method: 'tools/call', status }, 0);
    const http = new TalliedCounter({ name: 'mcp_http_responses_total', help: 'Client requests by method and the HTTP status code sent', labelNames: ['method', 'code'], registers });
    this.httpResponses = http.counter;
    this.duration = new Histogram({
      name: 'mcp_request_duration_seconds',
      help: 'Time to the end of the response, by MCP method',
      labelNames: ['method'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.activeConnections = new Gauge({ name: 'mcp_active_connections', help: 'Open client HTTP requests and streams', registers });
    const errors = new TalliedCounter({ name: 'mcp_errors_total', help: 'Requests that failed as the client saw it, by error type and MCP method', labelNames: ['error_type', 'method'], registers });
    this.errors = errors.counter;
    this.cacheHits = new Counter({ name: 'mcp_cache_hits_total', help: 'Requests answered from the result cache, by MCP method', labelNames: ['method'], registers });
    this.cacheMisses = new Counter({ name: 'mcp_cache_misses_total', help: 'Cacheable requests the cache could not answer, by MCP method', labelNames: ['method'], registers });
    for (const method of CACHEABLE_METHODS) {
      this.cacheHits.inc({ method }, 0);
      this.cacheMisses.inc({ method }, 0);
      this.#cacheHitsByMethod.set(method, this.cacheHits.labels(method));
      this.#cacheMissesByMethod.set(method, this.cacheMisses.labels(method));
    }

    this.upstreamEjections = new Counter({ name: 'mcp_upstream_ejections_total', help: 'Upstream replicas taken out of rotation', labelNames: ['server', 'replica'], registers });
    this.stdioProcesses = new Gauge({ name: 'mcp_stdio_processes', help: 'Running stdio upstream processes', labelNames: ['server'], registers });
    this.#replicaGauge('mcp_upstream_inflight', 'Requests waiting for or reading a non-stream response, per upstream replica', (r) => r.inflight);
    this.#replicaGauge('mcp_upstream_streams', 'Open SSE streams (and stdio children) per upstream replica', (r) => r.streams);
    this.#replicaGauge('mcp_upstream_breaker_state', 'Circuit breaker per upstream replica: 0 closed, 1 half-open, 2 open', (r) => BREAKER_STATE[r.breaker]);
    const upstreams = () => this.#upstreams;
    new Gauge({
      name: 'mcp_upstream_healthy_replicas',
      help: 'Upstream replicas of a server that can take new sessions now',
      labelNames: ['server'],
      registers,
      collect() {
        this.reset();
        for (const [server, upstream] of upstreams()) this.set({ server }, serverStatus(upstream).healthyReplicas);
      },
    });
    new Gauge({
      name: 'mcp_server_up',
      help: '1 when the server can open a new session now, else 0 (no healthy upstream replica, or a stdio server at maxProcesses)',
      labelNames: ['server'],
      registers,
      collect() {
        this.reset();
        for (const [server, upstream] of upstreams()) this.set({ server }, upstream.health() === 'up' ? 1 : 0);
      },
    });

    this.resumes = new Counter({ name: 'mcp_resume_total', help: 'Last-Event-ID resumptions by outcome', labelNames: ['outcome'], registers });
    for (const outcome of RESUME_OUTCOMES) this.resumes.inc({ outcome }, 0);
    this.eventLogAppendDuration = new Histogram({
      name: 'mcp_event_log_append_duration_seconds',
      help: 'Time to append one batch of SSE events to the event log (one round-trip)',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.redisErrors = new Counter({ name: 'mcp_redis_errors_total', help: 'Errors reported by the Redis connections', labelNames: ['connection'], registers });
    this.authFailures = new Counter({ name: 'mcp_auth_failures_total', help: 'Callers turned away by authentication or authorization, by reason', labelNames: ['reason'], registers });
    for (const reason of AUTH_FAILURE_REASONS) this.authFailures.inc({ reason }, 0);
    this.rateLimited = new Counter({ name: 'mcp_rate_limited_total', help: 'Calls refused by a rate limit, by server and limit scope', labelNames: ['server', 'scope'], registers });

    this.configReloads = new Counter({ name: 'mcp_config_reloads_total', help: 'Configuration reloads (SIGHUP, or a watched file changing) by outcome', labelNames: ['outcome'], registers });
    for (const outcome of RELOAD_OUTCOMES) this.configReloads.inc({ outcome }, 0);
    this.#configInfo = new Gauge({ name: 'mcp_config_info', help: 'Always 1; the hash label fingerprints the configuration this replica runs (secrets redacted)', labelNames: ['hash'], registers });

    this.#toolLabelLimit = opts.toolLabelLimit ?? 100;
    let toolCalls: TalliedCounter<'server' | 'tool' | 'status'> | undefined;
    if (opts.toolLabels) {
      toolCalls = new TalliedCounter({ name: 'mcp_tool_calls_total', help: 'tools/call requests by server, tool and outcome (success or error)', labelNames: ['server', 'tool', 'status'], registers });
      this.toolCalls = toolCalls.counter;
      this.toolDuration = new Histogram({ name: 'mcp_tool_call_duration_seconds', help: 'tools/call duration by server and tool', labelNames: ['server', 'tool'], buckets: DURATION_BUCKETS, registers });
    }
    this.#tallied = { requests, http, errors, ...(toolCalls ? { toolCalls } : {}) };
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * One finished client request (the hot path: label children are cached). `error` is its
   * error_type when the client got an error (see src/protocol/answers.ts), `code` the HTTP status sent.
   */
  request(method: string, error: string | undefined, code: number, seconds: number): void {
    const series = this.#byMethod.get(method) ?? this.#methodSeries(method);
    let http = series.http.get(code);
    if (!http) series.http.set(code, (http = this.#tallied.http.series({ method, code: String(code) })));
    http.count++;
    if (error === undefined) {
      series.success.count++;
    } else {
      series.failure.count++;
      let failure = series.errors.get(error);
      if (!failure) series.errors.set(error, (failure = this.#tallied.errors.series({ error_type: error, method })));
      failure.count++;
    }
    series.duration.observe(seconds);
  }

  /** A finished tools/call, counted per tool when `metrics.toolLabels` is on; else a no-op. */
  observeTool(server: string, tool: string, failed: boolean, seconds: number): void {
    if (!this.#tallied.toolCalls) return;
    const series = tool.length > MAX_TOOL_LABEL ? this.#otherToolOf(server) : (this.#byTool.get(`${server}\u0000${tool}`) ?? this.#toolSeries(server, tool));
    (failed ? series.failure : series.success).count++;
    series.duration.observe(seconds);
  }

  #methodSeries(method: string): MethodSeries {
    const requests = this.#tallied.requests;
    const series = { success: requests.series({ method, status: 'success' }), failure: requests.series({ method, status: 'error' }), duration: this.duration.labels(method), http: new Map(), errors: new Map() };
    this.#byMethod.set(method, series);
    return series;
  }

  /** A tool's series, made while fewer than `toolLabelLimit` exist; past that the server's `_other`. */
  #toolSeries(server: string, tool: string): ToolSeries {
    if (this.#byTool.size >= this.#toolLabelLimit) return this.#otherToolOf(server);
    const series = this.#newToolSeries(server, tool);
    this.#byTool.set(`${server}\u0000${tool}`, series);
    return series;
  }

  #otherToolOf(server: string): ToolSeries {
    let series = this.#otherTool.get(server);
    if (!series) this.#otherTool.set(server, (series = this.#newToolSeries(server, OTHER_TOOL)));
    return series;
  }

  #newToolSeries(server: string, tool: string): ToolSeries {
    const calls = this.#tallied.toolCalls!;
    return { success: calls.series({ server, tool, status: 'success' }), failure: calls.series({ server, tool, status: 'error' }), duration: this.toolDuration!.labels(server, tool) };
  }

  /** The cache answered (`hit`) or had to ask the upstream (`miss`). `method` as from methodLabel. */
  cacheLookup(method: string, hit: boolean): void {
    const children = hit ? this.#cacheHitsByMethod : this.#cacheMissesByMethod;
    let child = children.get(method);
    if (!child) {
      child = (hit ? this.cacheHits : this.cacheMisses).labels(method);
      children.set(method, child);
    }
    child.inc();
  }

  /** One `Last-Event-ID` resumption and how it ended. */
  resume(outcome: ResumeOutcome): void {
    this.resumes.inc({ outcome });
  }

  /** One event appended to the event log, in seconds (measure with performance.now()). */
  eventLogAppend(seconds: number): void {
    this.eventLogAppendDuration.observe(seconds);
  }

  authFailure(reason: AuthFailureReason): void {
    this.authFailures.inc({ reason });
  }

  /** A call refused by a rate limit; `server` is the configured server name. */
  rateLimit(server: string, scope: RateLimitScope): void {
    this.rateLimited.inc({ server, scope });
  }

  redisError(connection: RedisConnection): void {
    this.redisErrors.inc({ connection });
  }

  /** Per-replica gauges and healthy-replica counts are read from these upstreams at scrape time. */
  watchUpstreams(servers: ReadonlyMap<string, Upstream>): void {
    this.#upstreams = servers;
  }

  /** The configuration now running is the one `hash` names (src/config/reload.ts configHash). */
  configLoaded(hash: string): void {
    this.#configInfo.reset();
    this.#configInfo.set({ hash }, 1);
  }

  /** With Redis configured: `mcp_redis_up` (read at scrape time) and error series from zero. */
  watchRedis(up: () => boolean): void {
    for (const connection of REDIS_CONNECTIONS) this.redisErrors.inc({ connection }, 0);
    new Gauge({
      name: 'mcp_redis_up',
      help: '1 when every Redis connection is ready, else 0 (present only with redis configured)',
      registers: [this.registry],
      collect() {
        this.set(up() ? 1 : 0);
      },
    });
  }

  #replicaGauge(name: string, help: string, value: (r: ReturnType<Upstream['replicaStates']>[number]) => number): void {
    const upstreams = () => this.#upstreams;
    new Gauge({
      name,
      help,
      labelNames: ['server', 'replica'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [server, upstream] of upstreams()) {
          for (const r of upstream.replicaStates()) this.set({ server, replica: r.key }, value(r));
        }
      },
    });
  }
}
