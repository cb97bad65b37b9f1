import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { CONFORMANCE_REVISION, runConformance, startConformanceServer, type ConformanceServerProcess, type ScenarioResult } from '../helpers/conformance.ts';
import { startGateway } from '../helpers/gateway.ts';

/** Fewer direct passes than this means the reference server or the harness broke, not the gateway. */
const MIN_DIRECT_PASSES = 20;

const passing = (results: Map<string, ScenarioResult>) => new Set([...results].filter(([, r]) => r.pass).map(([name]) => name));

function report(direct: Map<string, ScenarioResult>, viaGateway: Map<string, ScenarioResult>): string {
  const names = [...new Set([...direct.keys(), ...viaGateway.keys()])].sort();
  const lines = [`Conformance (${CONFORMANCE_REVISION} requirement set), direct vs through the gateway:`];
  for (const name of names) {
    const d = direct.get(name);
    const g = viaGateway.get(name);
    const mark = (r: ScenarioResult | undefined) => (r === undefined ? 'not run' : r.pass ? 'pass' : 'FAIL');
    const differs = d?.pass !== g?.pass;
    lines.push(`${differs ? '≠' : ' '} ${name.padEnd(34)} direct: ${mark(d).padEnd(7)} gateway: ${mark(g)}`);
    if (differs) {
      for (const f of d?.failures ?? []) lines.push(`      direct  ✗ ${f}`);
      for (const f of g?.failures ?? []) lines.push(`      gateway ✗ ${f}`);
    }
  }
  return lines.join('\n');
}

describe(`official MCP conformance suite (${CONFORMANCE_REVISION}), server mode`, () => {
  let upstream: ConformanceServerProcess;
  let gw: Gateway;

  before(async () => {
    upstream = await startConformanceServer();
    gw = await startGateway({ servers: { ref: { upstreams: [{ url: upstream.url }] } } });
  });
  after(async () => {
    await gw?.close();
    await upstream?.stop();
  });

  it('passes the same scenarios through the gateway as against the reference server directly', async (t) => {
    const direct = await runConformance(upstream.url);
    const viaGateway = await runConformance(`${gw.url}/mcp/ref`);
    const directPass = passing(direct);
    const gatewayPass = passing(viaGateway);
    t.diagnostic(`direct: ${directPass.size}/${direct.size} scenarios pass; through the gateway: ${gatewayPass.size}/${viaGateway.size}`);

    // SHOULD-level degradations (warnings) do not fail a scenario; show them so they are not silent.
    for (const [name, d] of direct) {
      const g = viaGateway.get(name);
      const extra = g?.warnings.filter((w) => !d.warnings.includes(w)) ?? [];
      if (extra.length > 0) t.diagnostic(`${name}: warnings only through the gateway: ${extra.join('; ')}`);
    }

    const failedDirectly = [...direct].filter(([, r]) => !r.pass).map(([n, r]) => `${n}: ${r.failures.join('; ')}`);
    assert.ok(directPass.size >= MIN_DIRECT_PASSES, `only ${directPass.size} scenarios pass against the reference server directly (want ≥ ${MIN_DIRECT_PASSES}):\n${failedDirectly.join('\n')}`);

    const onlyDirect = [...directPass].filter((n) => !gatewayPass.has(n)).sort();
    const onlyGateway = [...gatewayPass].filter((n) => !directPass.has(n)).sort();
    assert.deepEqual(
      { onlyDirect, onlyGateway },
      { onlyDirect: [], onlyGateway: [] },
      `${report(direct, viaGateway)}\n\npass only directly: ${onlyDirect.join(', ') || '-'}\npass only through the gateway: ${onlyGateway.join(', ') || '-'}`,
    );
    assert.deepEqual([...viaGateway.keys()].sort(), [...direct.keys()].sort(), 'both runs should cover the same scenarios');
  });

  it('server-sse-polling (SEP-1699, pending in the requirement set): passes through the gateway as directly', async () => {
    const direct = (await runConformance(upstream.url, { scenario: 'server-sse-polling' })).get('server-sse-polling');
    const viaGateway = (await runConformance(`${gw.url}/mcp/ref`, { scenario: 'server-sse-polling' })).get('server-sse-polling');
    assert.ok(direct?.pass && direct.warnings.length === 0, `directly: ${JSON.stringify(direct)}`);
    assert.ok(viaGateway?.pass && viaGateway.warnings.length === 0, `through the gateway: ${JSON.stringify(viaGateway)}`);
  });
});
