/**
 * The compose stack's Prometheus configuration and the chart's alert rules, checked by the real
 * promtool (Debian's prometheus package) — the Prometheus container itself cannot run here.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { REPO, run } from '../helpers/docker.ts';

function hasPromtool(): boolean {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const skip = hasPromtool() ? false : 'promtool is not installed (apt-get install prometheus)';
if (skip) console.log(`#\n# SKIPPED: promtool checks of deploy/compose/prometheus.yml and the chart's alert rules: ${skip}\n#`);

const CHART_RULES = join(REPO, 'deploy/helm/mcp-gateway/files/alerts.yml');

describe('Prometheus configuration of the compose stack', { skip }, () => {
  it('promtool check config passes, with the alert rules the container mounts', async () => {
    const text = readFileSync(join(REPO, 'deploy/compose/prometheus.yml'), 'utf8');
    const cfg = parseYaml(text) as { rule_files: string[]; scrape_configs: { static_configs: { targets: string[] }[] }[] };
    assert.deepEqual(cfg.rule_files, ['/etc/prometheus/rules/*.yml']);
    assert.deepEqual(cfg.scrape_configs[0]!.static_configs[0]!.targets, ['gateway-1:9090', 'gateway-2:9090'], 'both compose gateways are scraped');
    // The compose file mounts prometheus/alerts.yml at /etc/prometheus/rules/; use it (or the chart's copy) here.
    const rules = existsSync(join(REPO, 'prometheus/alerts.yml')) ? join(REPO, 'prometheus/alerts.yml') : CHART_RULES;
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-promtool-'));
    try {
      const file = join(dir, 'prometheus.yml');
      writeFileSync(file, text.replace('/etc/prometheus/rules/*.yml', rules));
      const r = await run('promtool', ['check', 'config', file]);
      assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
      assert.match(`${r.stdout}${r.stderr}`, /SUCCESS: \d+ rules found/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the chart's PrometheusRule rules pass promtool check rules", async () => {
    const r = await run('promtool', ['check', 'rules', CHART_RULES]);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  });
});
