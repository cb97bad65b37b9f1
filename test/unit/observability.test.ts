import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DASHBOARDS, dashboardExpressions, dashboardJson, renderDashboards } from '../../grafana/src/dashboards.ts';
import { ALERTS, renderAlerts, renderAlertTests } from '../../prometheus/src/alerts.ts';
import { Metrics } from '../../src/ops/metrics.ts';

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

  it('every alert has a severity, a summary, a runbook-style description and an example', () => {
    assert.equal(new Set(ALERTS.map((a) => a.alert)).size, ALERTS.length);
    for (const a of ALERTS) {
      assert.ok(a.description.length > 80, `${a.alert}: description too short to act on`);
      assert.ok(a.example.quietAt.length > 0, `${a.alert}: example shows no quiet time`);
    }
    for (const name of ['MCPGatewayHighErrorRatio', 'MCPGatewayHighLatencyP95', 'MCPGatewayNoHealthyUpstream', 'MCPGatewayRedisDown', 'MCPGatewayResumeMissesRising']) {
      assert.ok(ALERTS.some((a) => a.alert === name), name);
    }
  });
});
