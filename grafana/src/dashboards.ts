import { QUERIES } from '../../prometheus/src/queries.ts';

/**
 * The Grafana dashboards, as code. `npm run dashboards` renders them into grafana/dashboards/*.json
 * (checked in, loaded by grafana/provisioning); a test fails when the checked-in JSON differs.
 */

export interface Target {
  readonly expr: string;
  readonly legend: string;
}

export interface PanelSpec {
  readonly title: string;
  readonly description: string;
  readonly unit: string;
  readonly targets: readonly Target[];
  readonly kind?: 'timeseries' | 'stat' | 'state-timeline';
  /** Width in grid columns (of 24). */
  readonly width?: number;
  readonly max?: number;
  /** Value → text and colour, for states. */
  readonly mappings?: readonly { value: number; text: string; color: string }[];
  /** Red at or below this value (stat panels that must stay above zero). */
  readonly redAtOrBelow?: number;
}

export interface RowSpec {
  readonly title: string;
  readonly panels: readonly PanelSpec[];
}

export interface DashboardSpec {
  readonly file: string;
  readonly uid: string;
  readonly title: string;
  readonly description: string;
  readonly rows: readonly RowSpec[];
}

const ts = (title: string, description: string, unit: string, targets: Target[], extra: Partial<PanelSpec> = {}): PanelSpec => ({
  title,
  description,
  unit,
  targets,
  ...extra,
});
const q = (expr: string, legend: string): Target => ({ expr, legend });

const BREAKER = [
  { value: 0, text: 'closed', color: 'green' },
  { value: 1, text: 'half-open', color: 'yellow' },
  { value: 2, text: 'open', color: 'red' },
];

export const DASHBOARDS: readonly DashboardSpec[] = [
  {
    file: 'mcp-gateway-overview.json',
    uid: 'mcp-gateway-overview',
    title: 'MCP Gateway / Overview',
    description: 'Traffic, latency, errors, cache, auth and rate limits of every gateway replica.',
    rows: [
      {
        title: 'Traffic',
        panels: [
          ts('Request rate', 'Client requests per second by MCP method (mcp_requests_total).', 'reqps', [q(QUERIES.requestRate, '{{method}}')]),
          ts(
            'Requests by outcome',
            'Client requests per second that succeeded or failed as the client saw it: a JSON-RPC error or an isError result inside an HTTP 200 (or the 202 of the 2024-11-05 transport) is an error.',
            'reqps',
            [q(QUERIES.requestRateByStatus, '{{status}}')],
          ),
          ts('Responses by HTTP status', 'Client requests per second by the HTTP status code sent (mcp_http_responses_total).', 'reqps', [q(QUERIES.httpResponseRateByCode, '{{code}}')]),
          ts('Active connections', 'Open client HTTP requests and SSE streams, per gateway replica.', 'short', [q(QUERIES.activeConnections, '{{instance}}')]),
        ],
      },
      {
        title: 'Latency',
        panels: [
          ts(
            'p95 latency by method',
            'Time to the end of the response. GET is a standalone SSE stream, open as long as the client listens; tools/call lasts as long as the tool works.',
            's',
            [q(QUERIES.p95Latency, '{{method}}')],
            { width: 12 },
          ),
          ts('p50 and p99 latency by method', 'Median and tail of the same histogram.', 's', [q(QUERIES.p50Latency, 'p50 {{method}}'), q(QUERIES.p99Latency, 'p99 {{method}}')], {
            width: 12,
          }),
        ],
      },
      {
        title: 'Errors',
        panels: [
          ts(
            'Error rate by code',
            'Failed requests per second, by error type and method: MCPGW_ERR_* the gateway\'s own code (see docs/errors.md), rpc_* an upstream\'s JSON-RPC error, tool_error a result with isError, cancelled a request the client gave up, http_4xx/http_5xx an HTTP error without a JSON-RPC one.',
            'reqps',
            [q(QUERIES.errorRate, '{{error_type}} {{method}}')],
            { width: 12 },
          ),
          ts(
            'Error ratio',
            'Share of requests that failed as the client saw it; of tools/call, those that reached a tool and failed there (isError or an upstream JSON-RPC error, inside an HTTP 200); and of responses sent with a 5xx status.',
            'percentunit',
            [q(QUERIES.errorRatio, 'errors / all'), q(QUERIES.toolCallFailureRatio, 'tools/call failed in a 200'), q(QUERIES.serverErrorRatio, 'HTTP 5xx / all')],
            { width: 12 },
          ),
        ],
      },
      {
        title: 'Cache, auth and limits',
        panels: [
          ts('Cache hit rate', 'Share of cacheable requests answered from the result cache, by method.', 'percentunit', [q(QUERIES.cacheHitRatio, '{{method}}')], { max: 1 }),
          ts('Auth failures by reason', 'Callers turned away by authentication or authorization, per second.', 'reqps', [q(QUERIES.authFailures, '{{reason}}')]),
          ts('Rate limited', 'Calls refused by a rate limit, per second, by server and limit.', 'reqps', [q(QUERIES.rateLimited, '{{server}} {{scope}}')]),
        ],
      },
      {
        title: 'Tools (with metrics.toolLabels)',
        panels: [
          ts('Top tools by call rate', 'tools/call per second for the ten busiest tools. Empty unless metrics.toolLabels is on.', 'reqps', [q(QUERIES.toolCallRate, '{{server}} {{tool}}')]),
          ts('Top tools by error rate', 'Failed tools/call per second (isError, a JSON-RPC error, a gateway error) for the ten most failing tools. Empty unless metrics.toolLabels is on.', 'reqps', [
            q(QUERIES.toolCallErrorRate, '{{server}} {{tool}}'),
          ]),
          ts('Slowest tools (p95)', 'p95 tools/call duration of the ten slowest tools. Empty unless metrics.toolLabels is on.', 's', [q(QUERIES.toolCallP95, '{{server}} {{tool}}')]),
        ],
      },
      {
        title: 'Process',
        panels: [
          ts('CPU', 'CPU seconds per second of each gateway process.', 'percentunit', [q(QUERIES.cpu, '{{instance}}')]),
          ts('Resident memory', 'RSS of each gateway process.', 'bytes', [q(QUERIES.rss, '{{instance}}')]),
          ts('Event loop lag p99', 'Event loop delay of each gateway process; high values delay every request.', 's', [q(QUERIES.eventLoopLag, '{{instance}}')]),
        ],
      },
    ],
  },
  {
    file: 'mcp-gateway-upstreams.json',
    uid: 'mcp-gateway-upstreams',
    title: 'MCP Gateway / Upstreams and state',
    description: 'Upstream replica health and load, session resumption, the event log and Redis.',
    rows: [
      {
        title: 'Upstream health',
        panels: [
          ts('Servers up', 'Per server: up when it can open new sessions on every gateway replica; down when some replica sees no healthy upstream or a stdio server at maxProcesses (GET /readyz?verbose on it says which).', 'short', [q(QUERIES.serversUp, '{{server}}')], {
            kind: 'stat',
            width: 6,
            mappings: [
              { value: 0, text: 'down', color: 'red' },
              { value: 1, text: 'up', color: 'green' },
            ],
          }),
          ts('Healthy replicas per server', 'Upstream replicas that can take new sessions (lowest over gateway replicas). 0 means new sessions of that server fail.', 'short', [q(QUERIES.healthyReplicas, '{{server}}')], {
            kind: 'stat',
            width: 6,
            redAtOrBelow: 0,
          }),
          ts('Breaker state', 'Per upstream replica: closed, half-open (back on trial) or open (ejected).', 'short', [q(QUERIES.breakerState, '{{server}} {{replica}}')], {
            kind: 'state-timeline',
            width: 12,
            mappings: BREAKER,
          }),
        ],
      },
      {
        title: 'Upstream load',
        panels: [
          ts('In-flight per replica', 'Requests waiting for or reading a non-stream response.', 'short', [q(QUERIES.upstreamInflight, '{{server}} {{replica}}')]),
          ts('Open streams per replica', 'Open SSE streams (and stdio children) per upstream replica.', 'short', [q(QUERIES.upstreamStreams, '{{server}} {{replica}}')]),
          ts('Ejections (5m)', 'Upstream replicas taken out of rotation in the last five minutes.', 'short', [q(QUERIES.upstreamEjections, '{{server}} {{replica}}')]),
          ts('stdio processes', 'Running stdio upstream children per server.', 'short', [q(QUERIES.stdioProcesses, '{{server}}')]),
        ],
      },
      {
        title: 'Resumption and event log',
        panels: [
          ts('Resume outcomes', 'Last-Event-ID resumptions per second: hit (replayed from the log), miss (unknown id), evicted (older than the log holds), upstream (resumed by the upstream).', 'reqps', [
            q(QUERIES.resumeRate, '{{outcome}}'),
          ], { width: 12 }),
          ts('Event-log append latency', 'Time to append one SSE event to the event log.', 's', [q(QUERIES.eventLogAppendP50, 'p50'), q(QUERIES.eventLogAppendP99, 'p99')], { width: 12 }),
        ],
      },
      {
        title: 'Redis',
        panels: [
          ts('Redis up', 'Per gateway replica: 1 when every Redis connection is ready. Absent without Redis.', 'short', [q(QUERIES.redisUp, '{{instance}}')], {
            kind: 'stat',
            mappings: [
              { value: 0, text: 'down', color: 'red' },
              { value: 1, text: 'up', color: 'green' },
            ],
            width: 8,
          }),
          ts('Redis errors', 'Errors reported by the Redis connections, per second.', 'reqps', [q(QUERIES.redisErrors, '{{instance}} {{connection}}')], { width: 16 }),
        ],
      },
    ],
  },
];

const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };
const HEIGHT = 8;

function panelJson(p: PanelSpec, id: number, gridPos: { h: number; w: number; x: number; y: number }): Record<string, unknown> {
  const kind = p.kind ?? 'timeseries';
  const steps: { color: string; value: number | null }[] = [{ color: 'green', value: null }];
  if (p.redAtOrBelow !== undefined) {
    steps[0] = { color: 'red', value: null };
    steps.push({ color: 'green', value: p.redAtOrBelow + 1 });
  }
  const defaults: Record<string, unknown> = {
    unit: p.unit,
    min: 0,
    ...(p.max !== undefined ? { max: p.max } : {}),
    color: { mode: p.mappings || p.redAtOrBelow !== undefined ? 'thresholds' : 'palette-classic' },
    thresholds: { mode: 'absolute', steps },
    mappings: p.mappings
      ? [{ type: 'value', options: Object.fromEntries(p.mappings.map((m, i) => [String(m.value), { text: m.text, color: m.color, index: i }])) }]
      : [],
  };
  if (kind === 'timeseries') {
    defaults.custom = { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, showPoints: 'never', spanNulls: false, axisSoftMin: 0 };
  }
  const options: Record<string, unknown> =
    kind === 'timeseries'
      ? { legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: ['mean', 'max', 'lastNotNull'] }, tooltip: { mode: 'multi', sort: 'desc' } }
      : kind === 'stat'
        ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'background', graphMode: 'none', textMode: 'value_and_name', justifyMode: 'auto', orientation: 'auto' }
        : { showValue: 'never', mergeValues: true, rowHeight: 0.9, alignValue: 'left', legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'single', sort: 'none' } };
  return {
    id,
    type: kind,
    title: p.title,
    description: p.description,
    datasource: DATASOURCE,
    gridPos,
    fieldConfig: { defaults, overrides: [] },
    options,
    targets: p.targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), datasource: DATASOURCE, expr: t.expr, legendFormat: t.legend, range: true, instant: false })),
  };
}

/** The Grafana JSON model of one dashboard: rows laid out top to bottom, panels left to right. */
export function dashboardJson(d: DashboardSpec): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of d.rows) {
    panels.push({ id: id++, type: 'row', title: row.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
    y += 1;
    const width = Math.floor(24 / row.panels.length);
    let x = 0;
    for (const p of row.panels) {
      const w = p.width ?? width;
      if (x + w > 24) {
        x = 0;
        y += HEIGHT;
      }
      panels.push(panelJson(p, id++, { h: HEIGHT, w, x, y }));
      x += w;
    }
    y += HEIGHT;
  }
  return {
    uid: d.uid,
    title: d.title,
    description: d.description,
    tags: ['mcp', 'mcp-gateway'],
    editable: true,
    graphTooltip: 1,
    refresh: '30s',
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    timezone: 'browser',
    links: [{ type: 'dashboards', tags: ['mcp-gateway'], title: 'MCP Gateway', asDropdown: true, includeVars: true, keepTime: true }],
    annotations: {
      list: [{ builtIn: 1, datasource: { type: 'grafana', uid: '-- Grafana --' }, enable: true, hide: true, iconColor: 'rgba(0, 211, 255, 1)', name: 'Annotations & Alerts', type: 'dashboard' }],
    },
    templating: {
      list: [{ name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: {}, hide: 0, refresh: 1, regex: '', options: [], includeAll: false, multi: false }],
    },
    panels,
  };
}

/** File name → file content, exactly as checked in. */
export function renderDashboards(): Map<string, string> {
  return new Map(DASHBOARDS.map((d) => [d.file, JSON.stringify(dashboardJson(d), null, 2) + '\n']));
}

/** Every PromQL expression of every panel, for the checks that evaluate them. */
export function dashboardExpressions(): { dashboard: string; panel: string; expr: string }[] {
  return DASHBOARDS.flatMap((d) => d.rows.flatMap((r) => r.panels.flatMap((p) => p.targets.map((t) => ({ dashboard: d.uid, panel: p.title, expr: t.expr })))));
}
