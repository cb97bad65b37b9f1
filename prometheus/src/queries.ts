/**
 * The PromQL the dashboards and the alert rules share, written once. Every expression here is
 * evaluated against a real Prometheus scraping a real gateway by test/integration/prometheus.test.ts.
 */

const rate = (selector: string, window = '5m') => `rate(${selector}[${window}])`;
const quantile = (q: number, metric: string, by: string, filter = '') =>
  `histogram_quantile(${q}, sum by (${by}) (rate(${metric}_bucket${filter}[5m])))`;

/** Keeps the series of targets that are gateways (they all export mcp_active_connections). */
const GATEWAY_ONLY = 'and on (instance, job) mcp_active_connections';

export const QUERIES = {
  // Traffic
  requestRate: `sum by (method) (${rate('mcp_requests_total')})`,
  /** `status`: success or error, as the client saw it (a JSON-RPC error or an isError result in a 200 is an error). */
  requestRateByStatus: `sum by (status) (${rate('mcp_requests_total')})`,
  httpResponseRateByCode: `sum by (code) (${rate('mcp_http_responses_total')})`,
  p50Latency: quantile(0.5, 'mcp_request_duration_seconds', 'le, method'),
  p95Latency: quantile(0.95, 'mcp_request_duration_seconds', 'le, method'),
  p99Latency: quantile(0.99, 'mcp_request_duration_seconds', 'le, method'),
  /** Standalone GET streams last as long as the client listens, and a tool runs as long as it runs. */
  p95LatencyRequests: quantile(0.95, 'mcp_request_duration_seconds', 'le, method', '{method!~"GET|tools/call"}'),
  p95LatencyToolCalls: quantile(0.95, 'mcp_request_duration_seconds', 'le', '{method="tools/call"}'),
  errorRate: `sum by (error_type, method) (${rate('mcp_errors_total')})`,
  errorRatio: `sum(${rate('mcp_requests_total{status="error"}')}) / sum(${rate('mcp_requests_total')})`,
  serverErrorRatio: `sum(${rate('mcp_http_responses_total{code=~"5.."}')}) / sum(${rate('mcp_http_responses_total')})`,
  /** tools/call that reached a tool and failed there: an isError result or an upstream JSON-RPC error, inside an HTTP 200. */
  toolCallFailureRatio:
    `sum(${rate('mcp_errors_total{method="tools/call",error_type=~"tool_error|rpc_.+"}')}) / ` + `sum(${rate('mcp_requests_total{method="tools/call"}')})`,
  activeConnections: 'sum by (instance) (mcp_active_connections)',
  cacheHitRatio:
    `sum by (method) (${rate('mcp_cache_hits_total')}) / ` +
    `(sum by (method) (${rate('mcp_cache_hits_total')}) + sum by (method) (${rate('mcp_cache_misses_total')}))`,
  toolCallRate: `topk(10, sum by (server, tool) (${rate('mcp_tool_calls_total')}))`,
  toolCallErrorRate: `topk(10, sum by (server, tool) (${rate('mcp_tool_calls_total{status="error"}')}))`,
  toolCallP95: `topk(10, ${quantile(0.95, 'mcp_tool_call_duration_seconds', 'le, server, tool')})`,

  // Upstreams
  /** Lowest over gateway replicas: 0 when any of them cannot open a session of the server. */
  serversUp: 'min by (server) (mcp_server_up)',
  healthyReplicas: 'min by (server) (mcp_upstream_healthy_replicas)',
  upstreamInflight: 'sum by (server, replica) (mcp_upstream_inflight)',
  upstreamStreams: 'sum by (server, replica) (mcp_upstream_streams)',
  upstreamEjections: 'sum by (server, replica) (increase(mcp_upstream_ejections_total[5m]))',
  breakerState: 'max by (server, replica) (mcp_upstream_breaker_state)',
  stdioProcesses: 'sum by (server) (mcp_stdio_processes)',

  // Resumption and the event log
  resumeRate: `sum by (outcome) (${rate('mcp_resume_total')})`,
  resumeMissRatio: `sum(${rate('mcp_resume_total{outcome=~"miss|evicted"}', '10m')}) / sum(${rate('mcp_resume_total', '10m')})`,
  eventLogAppendP50: quantile(0.5, 'mcp_event_log_append_duration_seconds', 'le'),
  eventLogAppendP99: quantile(0.99, 'mcp_event_log_append_duration_seconds', 'le'),

  // Redis, auth, limits
  redisUp: 'min by (instance) (mcp_redis_up)',
  redisErrors: `sum by (instance, connection) (${rate('mcp_redis_errors_total')})`,
  authFailures: `sum by (reason) (${rate('mcp_auth_failures_total')})`,
  rateLimited: `sum by (server, scope) (${rate('mcp_rate_limited_total')})`,

  // The process (default metrics), of gateway targets only: other jobs export the same names.
  cpu: `sum by (instance) (${rate('process_cpu_seconds_total')} ${GATEWAY_ONLY})`,
  rss: `sum by (instance) (process_resident_memory_bytes ${GATEWAY_ONLY})`,
  eventLoopLag: `max by (instance) (nodejs_eventloop_lag_p99_seconds ${GATEWAY_ONLY})`,
} as const;
