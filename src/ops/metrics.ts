import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

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

/** The gateway's Prometheus metrics, one registry per gateway instance. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'method' | 'status'>;
  readonly duration: Histogram<'method'>;
  readonly activeConnections: Gauge;
  readonly errors: Counter<'error_type' | 'method'>;
  readonly upstreamEjections: Counter<'server' | 'replica'>;
  readonly stdioProcesses: Gauge<'server'>;
  readonly resumes: Counter<'outcome'>;
  readonly appendSeconds: Histogram;
  readonly #durationByMethod = new Map<string, ReturnType<Histogram<'method'>['labels']>>();

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'mcp_requests_total', help: 'MCP requests by method and HTTP status', labelNames: ['method', 'status'], registers });
    this.duration = new Histogram({
      name: 'mcp_request_duration_seconds',
      help: 'Time to the end of the response, by MCP method',
      labelNames: ['method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.activeConnections = new Gauge({ name: 'mcp_active_connections', help: 'Open client HTTP requests and streams', registers });
    this.errors = new Counter({ name: 'mcp_errors_total', help: 'Errors answered, by gateway error code and MCP method', labelNames: ['error_type', 'method'], registers });
    this.upstreamEjections = new Counter({ name: 'mcp_upstream_ejections_total', help: 'Upstream replicas taken out of rotation', labelNames: ['server', 'replica'], registers });
    this.stdioProcesses = new Gauge({ name: 'mcp_stdio_processes', help: 'Running stdio upstream processes', labelNames: ['server'], registers });
    this.resumes = new Counter({ name: 'mcp_resume_total', help: 'Last-Event-ID resumptions by outcome (hit, miss, evicted, upstream)', labelNames: ['outcome'], registers });
    this.appendSeconds = new Histogram({
      name: 'mcp_event_log_append_seconds',
      help: 'Time to append one batch of SSE events to the event log',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
      registers,
    });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  observe(method: string, status: number, seconds: number): void {
    this.requests.inc({ method, status: String(status) });
    let child = this.#durationByMethod.get(method);
    if (!child) {
      child = this.duration.labels(method);
      this.#durationByMethod.set(method, child);
    }
    child.observe(seconds);
  }
}
