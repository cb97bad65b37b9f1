import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { dashboardExpressions } from '../../grafana/src/dashboards.ts';
import { ALERTS } from '../../prometheus/src/alerts.ts';
import { QUERIES } from '../../prometheus/src/queries.ts';
import { demoServerPath } from '../../src/config/load.ts';
import type { Gateway } from '../../src/gateway.ts';
import { connectClient } from '../helpers/client.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/ports.ts';
import { spawnChild, type Child } from '../helpers/process.ts';
import { startRedis, type RedisServer } from '../helpers/redis.ts';
import { startDemoUpstream, type HttpUpstreamProcess } from '../helpers/upstream.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ALERTS_FILE = join(ROOT, 'prometheus/alerts.yml');
const ALERT_TESTS_FILE = join(ROOT, 'prometheus/alerts.test.yml');

/** promtool and prometheus on PATH, installed by scripts/ensure-prometheus.sh when missing. */
function ensurePrometheus(): string | undefined {
  const r = spawnSync('bash', [join(ROOT, 'scripts/ensure-prometheus.sh')], { encoding: 'utf8', timeout: 280_000 });
  return r.status === 0 ? undefined : (r.stderr || r.stdout || `exit ${r.status}`).trim();
}

interface QueryResult {
  status: string;
  error?: string;
  warnings?: string[];
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

describe('observability with real tools: promtool, and Prometheus scraping a gateway under load', () => {
  let missing: string | undefined;
  before(
    () => {
      missing = ensurePrometheus();
      if (missing) console.warn(`\n*** SKIPPING the Prometheus tests: prometheus/promtool unavailable (${missing}) ***\n`);
    },
    { timeout: 300_000 },
  );
  const skipped = (t: TestContext) => {
    if (!missing) return false;
    t.skip(`prometheus/promtool unavailable: ${missing}`);
    return true;
  };

  it('promtool check rules accepts prometheus/alerts.yml', (t) => {
    if (skipped(t)) return;
    const out = execFileSync('promtool', ['check', 'rules', ALERTS_FILE], { encoding: 'utf8' });
    assert.match(out, new RegExp(`SUCCESS: ${ALERTS.length} rules found`));
  });

  it('promtool test rules: every alert fires on its example, annotations rendered', (t) => {
    if (skipped(t)) return;
    const r = spawnSync('promtool', ['test', 'rules', ALERT_TESTS_FILE], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  describe('a real Prometheus', () => {
    let redis: RedisServer;
    let upstream: HttpUpstreamProcess;
    let gw: Gateway;
    let prom: Child | undefined;
    let promUrl: string;
    let dir: string;

    before(async () => {
      if (missing) return;
      [redis, upstream] = await Promise.all([startRedis(), startDemoUpstream('prom')]);
      gw = await startGateway(
        {
          redis: { url: redis.url },
          metrics: { host: '127.0.0.1', port: 0, toolLabels: true },
          servers: { demo: { upstreams: [{ url: upstream.url }] }, local: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] } },
        },
        { defaultMetrics: true },
      );
      dir = mkdtempSync(join(tmpdir(), 'mcpgw-prom-'));
      const port = await freePort();
      promUrl = `http://127.0.0.1:${port}`;
      const config = {
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        rule_files: [ALERTS_FILE],
        scrape_configs: [{ job_name: 'mcp-gateway', static_configs: [{ targets: [new URL(gw.metricsUrl!).host] }] }],
      };
      writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
      prom = spawnChild('prometheus', [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ]);
      await until(async () => (await fetch(`${promUrl}/-/ready`).catch(() => undefined))?.ok === true, 'Prometheus ready', () => prom!.output.join('\n'));
      // Prometheus hands new targets to its scrapers a few seconds after start: wait for the first scrape.
      await until(async () => (await query('up{job="mcp-gateway"} == 1')).data?.result.length === 1, 'the first scrape', () => prom!.output.join('\n'));
    });
    after(async () => {
      await prom?.kill('SIGKILL');
      await gw?.close();
      await Promise.all([upstream?.stop(), redis?.stop()]);
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const query = async (expr: string): Promise<QueryResult> => {
      const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
      return (await res.json()) as QueryResult;
    };

    it('evaluates every dashboard and alert expression without error; request rate has data', async (t) => {
      if (skipped(t)) return;
      // A small load over a few scrapes: sessions on both servers, tool calls with progress, a
      // request to an unknown server (an error), session churn.
      const deadline = Date.now() + 3_000;
      const worker = async (server: string) => {
        while (Date.now() < deadline) {
          const { client, transport, close } = await connectClient(`${gw.url}/mcp/${server}`);
          await client.listTools();
          await client.callTool({ name: 'echo', arguments: { text: 'hi' } });
          // A tool the server does not have: an isError result inside an HTTP 200, counted as an error.
          await client.callTool({ name: 'no_such_tool', arguments: {} });
          await client.callTool({ name: 'slow_count', arguments: { count: 3, delayMs: 5 } }, undefined, { onprogress: () => {} });
          // Ended, not only closed: the SDK's close() leaves the session (and a stdio child) behind,
          // and a fast enough loop would reach the server's maxSessionsPerCaller within the 3 s.
          await transport.terminateSession();
          await close();
        }
      };
      const unknown = await fetch(`${gw.url}/mcp/nope`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(unknown.status, 404);
      await Promise.all([worker('demo'), worker('demo'), worker('local')]);

      let rate: QueryResult | undefined;
      await until(
        async () => {
          rate = await query(QUERIES.requestRate);
          return rate.data?.result.some((r) => r.metric.method === 'tools/call' && Number(r.value[1]) > 0) === true;
        },
        'request-rate data',
        () => JSON.stringify(rate),
      );

      const exprs = [
        ...dashboardExpressions().map((e) => ({ where: `dashboard ${e.dashboard} / ${e.panel}`, expr: e.expr })),
        ...ALERTS.map((a) => ({ where: `alert ${a.alert}`, expr: a.expr })),
      ];
      const failures: string[] = [];
      for (const { where, expr } of exprs) {
        const r = await query(expr);
        if (r.status !== 'success' || r.error || r.warnings?.length) failures.push(`${where}: ${r.error ?? ''} ${r.warnings?.join('; ') ?? ''}\n  ${expr}`);
      }
      assert.deepEqual(failures, [], `expressions Prometheus could not evaluate:\n${failures.join('\n')}`);

      // The series behind the other panels arrive too, with the labels the panels use.
      const has = async (expr: string, check: (r: QueryResult['data']) => boolean) => {
        const r = await query(expr);
        assert.ok(check(r.data), `${expr} → ${JSON.stringify(r.data?.result)}`);
      };
      await has(QUERIES.p95Latency, (d) => d!.result.some((r) => r.metric.method === 'tools/call'));
      await has(QUERIES.healthyReplicas, (d) => d!.result.length === 2 && d!.result.every((r) => Number(r.value[1]) === 1));
      await has(QUERIES.serversUp, (d) => d!.result.length === 2 && d!.result.every((r) => r.value[1] === '1'));
      await has(QUERIES.upstreamInflight, (d) => d!.result.some((r) => r.metric.replica === upstream.url));
      await has(QUERIES.breakerState, (d) => d!.result.some((r) => r.metric.server === 'demo' && r.value[1] === '0'));
      await has(QUERIES.redisUp, (d) => d!.result.length === 1 && d!.result[0]!.value[1] === '1');
      await has(QUERIES.errorRate, (d) => d!.result.some((r) => r.metric.error_type === 'MCPGW_ERR_UNKNOWN_SERVER'));
      await has(QUERIES.errorRate, (d) => d!.result.some((r) => r.metric.error_type === 'tool_error' && r.metric.method === 'tools/call'));
      await has(QUERIES.requestRateByStatus, (d) => ['success', 'error'].every((s) => d!.result.some((r) => r.metric.status === s && Number(r.value[1]) > 0)));
      await has(QUERIES.httpResponseRateByCode, (d) => d!.result.some((r) => r.metric.code === '200') && d!.result.some((r) => r.metric.code === '404'));
      await has(QUERIES.toolCallFailureRatio, (d) => d!.result.length === 1 && Number(d!.result[0]!.value[1]) > 0);
      await has(QUERIES.toolCallRate, (d) => d!.result.some((r) => r.metric.tool === 'echo'));
      await has(QUERIES.rss, (d) => d!.result.length === 1);
      await has('mcp_resume_total', (d) => d!.result.length === 4);
    });

    it('loads every alert rule and evaluates it healthily; the health alerts stay quiet', async (t) => {
      if (skipped(t)) return;
      type Rule = { name: string; health: string; lastError?: string; state: string; alerts: { labels: Record<string, string> }[] };
      let rules: Rule[] = [];
      await until(async () => {
        const body = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: (Rule & { lastEvaluation: string })[] }[] } };
        rules = body.data.groups.flatMap((g) => g.rules);
        return rules.length > 0 && body.data.groups.flatMap((g) => g.rules).every((r) => !r.lastEvaluation.startsWith('0001'));
      }, 'rules evaluated');
      assert.deepEqual(rules.map((r) => r.name).sort(), ALERTS.map((a) => a.alert).sort());
      for (const r of rules) assert.equal(r.health, 'ok', `${r.name}: ${r.lastError ?? ''}`);
      // Upstreams up, Redis up: these must be quiet. (Latency and error ratios depend on how busy
      // the test machine is; their firing is shown by promtool test rules.)
      const quiet = ['MCPGatewayNoHealthyUpstream', 'MCPGatewayUpstreamBreakerOpen', 'MCPGatewayRedisDown'];
      const active = rules.filter((r) => r.state !== 'inactive');
      if (active.length) t.diagnostic(`active (load-dependent) alerts: ${JSON.stringify(active.map((r) => ({ name: r.name, labels: r.alerts.map((a) => a.labels) })))}`);
      assert.deepEqual(active.filter((r) => quiet.includes(r.name)).map((r) => r.name), []);
    });
  });
});

async function until(check: () => Promise<boolean>, what: string, detail?: () => string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${detail ? `:\n${detail()}` : ''}`);
}
