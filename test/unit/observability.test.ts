import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DASHBOARDS, dashboardExpressions, dashboardJson, renderDashboards } from '../../grafana/src/dashboards.ts';
import { ALERTS, renderAlerts, renderAlertTests } from '../../prometheus/src/alerts.ts';
import { ERRORS } from '../../src/errors.ts';
import { Metrics, REQUEST_STATUSES } from '../../src/ops/metrics.ts';
import { ANSWER_ERROR_TYPES } from '../../src/protocol/answers.ts';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** Every metric family a gateway can export, with every optional part switched on. */
function allMetricNames(): Map<string, string> {
  const m = new Metrics({ defaultMetrics: true, toolLabels: true });
  m.watchRedis(() => true);
  return new Map(m.registry.getMetricsAsArray().map((x) => [x.name, x.type as unknown as string]));
}

/** Metric names an expression reads (histogram series reduced to their family). */
function metricsIn(expr: string): string[] {
  const names = expr.replace(/"[^"]*"/g, '""').match(/\b(?:mcp|process|nodejs)_[a-z0-9_]+/g) ?? [];
  return names.map((n) => n.replace(/_(bucket|sum|count)$/, ''));
}

describe('dashboards and alert rules as code', () => {
  it('the checked-in files are what `npm run dashboards` renders', () => {
    const rendered = renderDashboards();
    assert.deepEqual(readdirSync(new URL('grafana/dashboards/', root)).sort(), [...rendered.keys()].sort(), 'no stale or missing dashboard files');
    for (const [file, text] of rendered) assert.equal(read(`grafana/dashboards/${file}`), text, `grafana/dashboards/${file} is stale: run npm run dashboards`);
    assert.equal(read('prometheus/alerts.yml'), renderAlerts(), 'prometheus/alerts.yml is stale: run npm run dashboards');
    assert.equal(read('prometheus/alerts.test.yml'), renderAlertTests(), 'prometheus/alerts.test.yml is stale: run npm run dashboards');
  });

  it('every panel and rule reads metrics the gateway exports', () => {
    const known = allMetricNames();
    const exprs = [...dashboardExpressions().map((e) => ({ where: `${e.dashboard} / ${e.panel}`, expr: e.expr })), ...ALERTS.map((a) => ({ where: a.alert, expr: a.expr }))];
    for (const { where, expr } of exprs) {
      const names = metricsIn(expr);
      assert.ok(names.length > 0, `${where}: reads no metric`);
      for (const n of names) assert.ok(known.has(n), `${where}: ${n} is not a gateway metric`);
    }
  });

  it('panels the issue asks for exist, with the p95 expression as specified', () => {
    const exprs = dashboardExpressions().map((e) => e.expr);
    assert.ok(exprs.includes('histogram_quantile(0.95, sum by (le, method) (rate(mcp_request_duration_seconds_bucket[5m])))'));
    const titles = dashboardExpressions().map((e) => e.panel);
    for (const t of ['Request rate', 'p95 latency by method', 'Error rate by code', 'Cache hit rate', 'Active connections', 'In-flight per replica', 'Open streams per replica', 'Ejections (5m)', 'Breaker state', 'Resume outcomes', 'Event-log append latency', 'Redis errors', 'Auth failures by reason', 'Rate limited']) {
      assert.ok(titles.includes(t), `panel "${t}"`);
    }
  });

  it('dashboards are well-formed Grafana models: unique ids, panels inside the grid, never overlapping', () => {
    assert.equal(new Set(DASHBOARDS.map((d) => d.uid)).size, DASHBOARDS.length);
    for (const d of DASHBOARDS) {
      const json = dashboardJson(d) as { panels: { id: number; type: string; gridPos: { x: number; y: number; w: number; h: number }; targets?: { refId: string; expr: string; datasource: { uid: string } }[] }[] };
      const ids = json.panels.map((p) => p.id);
      assert.equal(new Set(ids).size, ids.length, `${d.uid}: duplicate panel ids`);
      const cells = new Set<string>();
      for (const p of json.panels) {
        const { x, y, w, h } = p.gridPos;
        assert.ok(x >= 0 && w > 0 && x + w <= 24, `${d.uid}: panel ${p.id} leaves the 24-column grid`);
        for (let i = x; i < x + w; i++) {
          for (let j = y; j < y + h; j++) {
            assert.ok(!cells.has(`${i},${j}`), `${d.uid}: panel ${p.id} overlaps another`);
            cells.add(`${i},${j}`);
          }
        }
        if (p.type === 'row') continue;
        assert.ok(p.targets && p.targets.length > 0, `${d.uid}: panel ${p.id} has no query`);
        for (const t of p.targets) assert.equal(t.datasource.uid, '${datasource}');
      }
    }
  });

  it('panels and rules read status as what the client got (success|error), HTTP codes from mcp_http_responses_total', () => {
    const exprs = [...dashboardExpressions().map((e) => e.expr), ...ALERTS.map((a) => a.expr)];
    for (const expr of exprs) {
      for (const [, name, selector] of expr.matchAll(/\b(mcp_requests_total|mcp_tool_calls_total)\{([^}]*)\}/g)) {
        for (const [, op, value] of selector!.matchAll(/\bstatus(=~|!~|=|!=)"([^"]*)"/g)) {
          const values = op!.includes('~') ? value!.split('|') : [value!];
          for (const v of values) assert.ok((REQUEST_STATUSES as readonly string[]).includes(v), `${name}{status${op}"${value}"} reads an HTTP status: ${expr}`);
        }
      }
    }
    assert.ok(exprs.some((e) => e.includes('mcp_http_responses_total{code=~"5.."}')), 'a 5xx ratio from the HTTP series');
  });

  it('an alert fires on tool calls that fail inside HTTP 200s: every tool_error and rpc_* type, none of the gateway codes', () => {
    const alert = ALERTS.find((a) => a.alert === 'MCPGatewayToolCallsFailing');
    assert.ok(alert, 'MCPGatewayToolCallsFailing');
    assert.match(alert.expr, /mcp_errors_total\{[^}]*method="tools\/call"/);
    assert.match(alert.expr, /mcp_requests_total\{method="tools\/call"\}/);
    const types = new RegExp(`^(?:${/error_type=~"([^"]+)"/.exec(alert.expr)![1]})$`);
    for (const t of ANSWER_ERROR_TYPES) assert.equal(types.test(t), t === 'tool_error' || t.startsWith('rpc_'), t);
    for (const code of Object.keys(ERRORS)) assert.equal(types.test(code), false, code);
    // Its example history holds a gateway error that must not count (the rendered value says so).
    assert.ok(Object.keys(alert.example.series).some((k) => k.includes('error_type="MCPGW_ERR_')));
  });

  it('every alert has a severity, a summary, a runbook-style description and an example', () => {
    assert.equal(new Set(ALERTS.map((a) => a.alert)).size, ALERTS.length);
    for (const a of ALERTS) {
      assert.ok(a.description.length > 80, `${a.alert}: description too short to act on`);
      assert.ok(a.example.quietAt.length > 0, `${a.alert}: example shows no quiet time`);
    }
    for (const name of ['MCPGatewayHighErrorRatio', 'MCPGatewayToolCallsFailing', 'MCPGatewayHighLatencyP95', 'MCPGatewayNoHealthyUpstream', 'MCPGatewayRedisDown', 'MCPGatewayResumeMissesRising']) {
      assert.ok(ALERTS.some((a) => a.alert === name), name);
    }
  });
});
