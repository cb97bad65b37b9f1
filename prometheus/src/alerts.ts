import { stringify } from 'yaml';
import { QUERIES } from './queries.ts';

/**
 * The Prometheus alert rules, as code. `npm run dashboards` renders them into
 * prometheus/alerts.yml and their examples into prometheus/alerts.test.yml; a test fails when the
 * checked-in files differ, `promtool check rules` validates the rules and `promtool test rules`
 * shows each one fire on its example, with its annotations rendered.
 */

export interface AlertSpec {
  readonly alert: string;
  readonly expr: string;
  readonly for: string;
  readonly severity: 'critical' | 'warning';
  readonly summary: string;
  /** What it means and what to do first: the runbook, short. */
  readonly description: string;
  readonly example: AlertExample;
}

/** A made-up history (promtool `input_series`, one sample a minute) under which the alert fires. */
export interface AlertExample {
  readonly series: Readonly<Record<string, string>>;
  /** Evaluation times at which it must not fire (not yet, or not for this part of the history). */
  readonly quietAt: readonly string[];
  readonly firesAt: string;
  /** The firing alert's labels besides alertname and severity. */
  readonly labels: Readonly<Record<string, string>>;
  /** How `{{ $value | … }}` renders at `firesAt`. */
  readonly value: string;
}

const JOB = 'job="mcp-gateway",instance="gw1"';

export const ALERTS: readonly AlertSpec[] = [
  {
    alert: 'MCPGatewayHighErrorRatio',
    expr: `(${QUERIES.errorRatio}) > 0.05`,
    for: '5m',
    severity: 'critical',
    summary: 'More than 5% of MCP requests fail',
    description:
      '{{ $value | humanizePercentage }} of requests in the last 5 minutes failed as their clients saw it, whatever the HTTP status ' +
      '(a JSON-RPC error or an isError result inside a 200 counts). Look at the "Error rate by code" panel: MCPGW_ERR_UPSTREAM_* and ' +
      'MCPGW_ERR_NO_HEALTHY_UPSTREAM point at the upstreams (see the Upstreams dashboard), MCPGW_ERR_INTERNAL at the gateway itself ' +
      '(its error log lines carry reqId, server and method), tool_error and rpc_* at what the upstream servers answer (see ' +
      'MCPGatewayToolCallsFailing), cancelled at clients giving up (often after slow answers).',
    example: {
      series: {
        [`mcp_requests_total{${JOB},method="tools/call",status="success"}`]: '0+90x30',
        [`mcp_requests_total{${JOB},method="tools/call",status="error"}`]: '0x5 0+10x25',
      },
      quietAt: ['4m', '8m'],
      firesAt: '15m',
      labels: {},
      value: '10%',
    },
  },
  {
    alert: 'MCPGatewayToolCallsFailing',
    expr: `(${QUERIES.toolCallFailureRatio}) > 0.1`,
    for: '10m',
    severity: 'warning',
    summary: 'More than 10% of tool calls fail inside HTTP 200s',
    description:
      '{{ $value | humanizePercentage }} of tools/call in the last 5 minutes reached an upstream and came back failed, in an ' +
      'HTTP 200: a result with isError (mcp_errors_total{error_type="tool_error"}) or a JSON-RPC error (error_type rpc_*; ' +
      'rpc_invalid_params is often an unknown tool or bad arguments). No 5xx shows it. Enable metrics.toolLabels to see which ' +
      'tool fails (the "Top tools by error rate" panel), then read the failing answers in the audit log (outcome "error").',
    example: {
      series: {
        [`mcp_requests_total{${JOB},method="tools/call",status="success"}`]: '0+80x40',
        [`mcp_requests_total{${JOB},method="tools/call",status="error"}`]: '0+1x10 10+20x30',
        // A failure of the gateway's own does not count here.
        [`mcp_errors_total{${JOB},method="tools/call",error_type="MCPGW_ERR_UPSTREAM_TIMEOUT"}`]: '0+1x40',
        [`mcp_errors_total{${JOB},method="tools/call",error_type="tool_error"}`]: '0x10 0+15x30',
        [`mcp_errors_total{${JOB},method="tools/call",error_type="rpc_invalid_params"}`]: '0x10 0+4x30',
      },
      quietAt: ['9m', '18m'],
      firesAt: '30m',
      labels: {},
      value: '19%',
    },
  },
  {
    alert: 'MCPGatewayHighLatencyP95',
    expr: `${QUERIES.p95LatencyRequests} > 1`,
    for: '10m',
    severity: 'warning',
    summary: 'p95 latency of {{ $labels.method }} is above 1 s',
    description:
      'p95 of {{ $labels.method }} has been {{ $value | humanizeDuration }} for 10 minutes (standalone GET streams and tools/call are ' +
      'left out: they last as long as the client listens or the tool works). Check upstream in-flight per replica (saturated ' +
      'upstream?), the event loop lag and CPU of the gateway replicas, and Redis latency. For a stdio server, initialize includes ' +
      'starting its child process: a slow-starting command shows here.',
    example: {
      series: {
        // initialize: every request between 1 and 2.5 s.
        [`mcp_request_duration_seconds_bucket{${JOB},method="initialize",le="1"}`]: '0+0x30',
        [`mcp_request_duration_seconds_bucket{${JOB},method="initialize",le="2.5"}`]: '0+10x30',
        [`mcp_request_duration_seconds_bucket{${JOB},method="initialize",le="+Inf"}`]: '0+10x30',
        // A standalone GET stream lasting minutes is no latency problem.
        [`mcp_request_duration_seconds_bucket{${JOB},method="GET",le="1"}`]: '0+0x30',
        [`mcp_request_duration_seconds_bucket{${JOB},method="GET",le="300"}`]: '0+5x30',
        [`mcp_request_duration_seconds_bucket{${JOB},method="GET",le="+Inf"}`]: '0+5x30',
      },
      quietAt: ['5m'],
      firesAt: '20m',
      labels: { method: 'initialize' },
      value: '2.425s',
    },
  },
  {
    alert: 'MCPGatewaySlowToolCalls',
    expr: `${QUERIES.p95LatencyToolCalls} > 30`,
    for: '15m',
    severity: 'warning',
    summary: 'p95 of tools/call is above 30 s',
    description:
      'p95 of tools/call has been {{ $value | humanizeDuration }} for 15 minutes. Usually an upstream tool got slower: enable ' +
      'metrics.toolLabels to see which tool, and compare with the upstream replicas\' in-flight and open streams.',
    example: {
      series: {
        [`mcp_request_duration_seconds_bucket{${JOB},method="tools/call",le="30"}`]: '0+0x40',
        [`mcp_request_duration_seconds_bucket{${JOB},method="tools/call",le="60"}`]: '0+10x40',
        [`mcp_request_duration_seconds_bucket{${JOB},method="tools/call",le="+Inf"}`]: '0+10x40',
      },
      quietAt: ['10m'],
      firesAt: '25m',
      labels: {},
      value: '58.5s',
    },
  },
  {
    alert: 'MCPGatewayNoHealthyUpstream',
    expr: 'mcp_server_up == 0',
    for: '1m',
    severity: 'critical',
    summary: 'Server {{ $labels.server }} cannot open new sessions on {{ $labels.instance }}',
    description:
      'Every upstream replica of server {{ $labels.server }} is ejected, or (stdio) maxProcesses children are running, so its ' +
      'new sessions get a fast 503. The gateway replica stays ready and serves its other servers; GET /readyz?verbose on it ' +
      'says which (no_healthy_upstream or at_capacity), and its log has a "server down" line, after the "upstream replica ' +
      'ejected" lines with their reasons. Check that the upstreams run and answer on their URLs (ejected replicas are tried ' +
      'again after failTimeout), or raise maxProcesses.',
    example: {
      series: {
        [`mcp_server_up{${JOB},server="api"}`]: '1 1 0 0 0 0',
        [`mcp_server_up{${JOB},server="files"}`]: '1 1 1 1 1 1',
      },
      quietAt: ['2m'],
      firesAt: '4m',
      labels: { job: 'mcp-gateway', instance: 'gw1', server: 'api' },
      value: '0',
    },
  },
  {
    alert: 'MCPGatewayUpstreamBreakerOpen',
    expr: `${QUERIES.breakerState} == 2`,
    for: '5m',
    severity: 'warning',
    summary: 'Upstream replica {{ $labels.replica }} of {{ $labels.server }} is out of rotation',
    description:
      'The replica has been ejected (breaker open) for 5 minutes: it keeps failing each time it is tried again. Its sessions ' +
      'get 404 and re-initialize on another replica. Fix or remove the replica.',
    example: {
      series: {
        [`mcp_upstream_breaker_state{${JOB},server="api",replica="http://10.0.0.2:3001/mcp"}`]: '0 2 1 2 2 2 2 2 2 2',
        [`mcp_upstream_breaker_state{job="mcp-gateway",instance="gw2",server="api",replica="http://10.0.0.2:3001/mcp"}`]: '0 0 0 2 2 2 2 2 2 2',
        [`mcp_upstream_breaker_state{${JOB},server="api",replica="http://10.0.0.1:3001/mcp"}`]: '0 0 0 0 0 0 0 0 0 0',
      },
      quietAt: ['5m'],
      firesAt: '8m',
      labels: { server: 'api', replica: 'http://10.0.0.2:3001/mcp' },
      value: '2',
    },
  },
  {
    alert: 'MCPGatewayRedisDown',
    expr: 'mcp_redis_up == 0',
    for: '1m',
    severity: 'critical',
    summary: 'Gateway {{ $labels.instance }} cannot reach Redis',
    description:
      'A Redis connection of this gateway replica has not been ready for a minute. Proxying goes on, but sessions ended on other ' +
      'replicas may still be served here, events are not logged and resumption fails; /readyz reports it. Check Redis itself ' +
      '(mcp_redis_errors_total and the "redis error" log lines say what the client sees). The gateway reconnects by itself.',
    example: {
      series: {
        [`mcp_redis_up{${JOB}}`]: '1 0 1 0 0 0',
        [`mcp_redis_up{job="mcp-gateway",instance="gw2"}`]: '1 1 1 1 1 1',
      },
      quietAt: ['1m', '2m'],
      firesAt: '5m',
      labels: { job: 'mcp-gateway', instance: 'gw1' },
      value: '0',
    },
  },
  {
    alert: 'MCPGatewayResumeMissesRising',
    expr: `(${QUERIES.resumeMissRatio}) > 0.05 and sum(rate(mcp_resume_total{outcome=~"miss|evicted"}[10m])) > 0.0167`,
    for: '10m',
    severity: 'warning',
    summary: 'More than 5% of stream resumptions miss events',
    description:
      '{{ $value | humanizePercentage }} of Last-Event-ID resumptions found their event neither in the event log nor upstream ' +
      '(more than one a minute). "evicted" means the log no longer held the event: raise the event log\'s retention or look for ' +
      'clients reconnecting very late; "miss" means an id unknown to the log: look for Redis data loss (restart without ' +
      'persistence, eviction policy) or gateway replicas using different Redis instances.',
    example: {
      series: {
        [`mcp_resume_total{${JOB},outcome="hit"}`]: '0+30x40',
        [`mcp_resume_total{${JOB},outcome="upstream"}`]: '0+0x40',
        [`mcp_resume_total{${JOB},outcome="miss"}`]: '0+0x40',
        [`mcp_resume_total{${JOB},outcome="evicted"}`]: '0x10 0+5x30',
      },
      quietAt: ['10m'],
      firesAt: '35m',
      labels: {},
      value: '14.29%',
    },
  },
];

/** prometheus/alerts.yml, exactly as checked in. */
export function renderAlerts(): string {
  const doc = {
    groups: [
      {
        name: 'mcp-gateway',
        rules: ALERTS.map((a) => ({
          alert: a.alert,
          expr: a.expr,
          for: a.for,
          labels: { severity: a.severity },
          annotations: { summary: a.summary, description: a.description },
        })),
      },
    ],
  };
  return '# Generated from prometheus/src/alerts.ts by `npm run dashboards`: edit that file, not this one.\n' + stringify(doc, { lineWidth: 0 });
}

/** An annotation as Prometheus renders it for the example: `$labels.x` and `$value` filled in. */
function renderTemplate(text: string, labels: Readonly<Record<string, string>>, value: string): string {
  return text.replace(/\{\{ \$labels\.(\w+) \}\}/g, (_m, name: string) => labels[name] ?? '').replace(/\{\{ \$value[^}]*\}\}/g, value);
}

/** prometheus/alerts.test.yml (promtool's unit tests), exactly as checked in. */
export function renderAlertTests(): string {
  const doc = {
    rule_files: ['alerts.yml'],
    evaluation_interval: '1m',
    tests: ALERTS.map((a) => {
      const e = a.example;
      return {
        name: `${a.alert} fires on its example`,
        interval: '1m',
        input_series: Object.entries(e.series).map(([series, values]) => ({ series, values })),
        alert_rule_test: [
          ...e.quietAt.map((t) => ({ eval_time: t, alertname: a.alert, exp_alerts: [] })),
          {
            eval_time: e.firesAt,
            alertname: a.alert,
            exp_alerts: [
              {
                exp_labels: { ...e.labels, severity: a.severity },
                exp_annotations: { summary: renderTemplate(a.summary, e.labels, e.value), description: renderTemplate(a.description, e.labels, e.value) },
              },
            ],
          },
        ],
      };
    }),
  };
  return '# Generated from prometheus/src/alerts.ts by `npm run dashboards`: edit that file, not this one.\n' + stringify(doc, { lineWidth: 0 });
}
