import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Gateway } from '../../src/gateway.ts';
import { runConformance, type ScenarioResult } from '../helpers/conformance.ts';
import { startEraServer, V2026, type EraServer } from '../helpers/era.ts';
import { startGateway } from '../helpers/gateway.ts';

/**
 * The official conformance suite, by requirement set (`--requirements`), against our reference
 * server of both eras (test/helpers/era-server.ts: one set of handlers, served 2026-07-28 only or
 * in the session era) directly and through the gateway: forwarded, and translated between eras.
 */

/**
 * Scenarios that cannot pass through a translation to a session-era upstream, and why (see
 * docs/protocol.md, "What cannot be translated"). The test fails if one of them starts passing
 * too, so this list stays exact.
 */
const UNTRANSLATABLE_TO_SESSIONS: Readonly<Record<string, string>> = {
  'input-required-result-basic-elicitation':
    'checks that the input request is keyed "user_name", the name the server code chose; a session-era server sends its elicitation/create without a name, so the gateway can only make one up',
};

const passing = (results: Map<string, ScenarioResult>) => new Set([...results].filter(([, r]) => r.pass).map(([name]) => name));

function report(title: string, direct: Map<string, ScenarioResult>, viaGateway: Map<string, ScenarioResult>): string {
  const mark = (r: ScenarioResult | undefined) => (r === undefined ? 'not run' : r.pass ? 'pass' : 'FAIL');
  const lines = [title];
  for (const name of [...new Set([...direct.keys(), ...viaGateway.keys()])].sort()) {
    const d = direct.get(name);
    const g = viaGateway.get(name);
    const differs = d?.pass !== g?.pass;
    lines.push(`${differs ? '≠' : ' '} ${name.padEnd(48)} direct: ${mark(d).padEnd(7)} gateway: ${mark(g)}`);
    if (differs) for (const f of [...(d?.failures ?? []).map((x) => `direct  ✗ ${x}`), ...(g?.failures ?? []).map((x) => `gateway ✗ ${x}`)]) lines.push(`      ${f}`);
  }
  return lines.join('\n');
}

/** Same passing scenarios, except exactly `expectedOnlyDirect`; at least `minDirect` pass directly. */
function assertSame(t: TestContext, title: string, direct: Map<string, ScenarioResult>, viaGateway: Map<string, ScenarioResult>, minDirect: number, expectedOnlyDirect: readonly string[] = []): void {
  const d = passing(direct);
  const g = passing(viaGateway);
  t.diagnostic(`${title}: ${d.size}/${direct.size} pass directly, ${g.size}/${viaGateway.size} through the gateway`);
  const failed = [...direct].filter(([, r]) => !r.pass).map(([n, r]) => `${n}: ${r.failures.join('; ')}`);
  assert.ok(d.size >= minDirect, `only ${d.size} scenarios pass directly (want ≥ ${minDirect}):\n${failed.join('\n')}`);
  const onlyDirect = [...d].filter((n) => !g.has(n)).sort();
  const onlyGateway = [...g].filter((n) => !d.has(n)).sort();
  assert.deepEqual({ onlyDirect, onlyGateway }, { onlyDirect: [...expectedOnlyDirect].sort(), onlyGateway: [] }, report(title, direct, viaGateway));
  assert.deepEqual([...viaGateway.keys()].sort(), [...direct.keys()].sort(), 'both runs should cover the same scenarios');
}

describe('conformance across protocol eras', () => {
  let stateless: EraServer;
  let sessions: EraServer;
  let gw: Gateway;

  before(async () => {
    [stateless, sessions] = await Promise.all([startEraServer('stateless'), startEraServer('session')]);
    gw = await startGateway({
      servers: {
        // era: auto: the gateway finds out (server/discover, then initialize).
        stateless: { upstreams: [{ url: stateless.url }] },
        sessions: { upstreams: [{ url: sessions.url }] },
      },
    });
  });
  after(async () => {
    await gw?.close();
    await Promise.all([stateless?.stop(), sessions?.stop()]);
  });

  it(`${V2026}: the same scenarios pass through the gateway to a ${V2026} upstream (forwarded)`, async (t) => {
    const direct = await runConformance(stateless.url, { revision: V2026 });
    const viaGateway = await runConformance(`${gw.url}/mcp/stateless`, { revision: V2026 });
    assertSame(t, `${V2026}, forwarded`, direct, viaGateway, 30);
  });

  it(`${V2026}: the same scenarios pass when the gateway translates to the same handlers served in the session era`, async (t) => {
    const direct = await runConformance(stateless.url, { revision: V2026 });
    const viaGateway = await runConformance(`${gw.url}/mcp/sessions`, { revision: V2026 });
    for (const [name, why] of Object.entries(UNTRANSLATABLE_TO_SESSIONS)) t.diagnostic(`${name} cannot pass through translation: ${why}`);
    assertSame(t, `${V2026}, translated to the session era`, direct, viaGateway, 30, Object.keys(UNTRANSLATABLE_TO_SESSIONS));
  });

  it(`2025-11-25: the same scenarios pass when the gateway translates to the same handlers served ${V2026} only`, async (t) => {
    const direct = await runConformance(sessions.url, { revision: '2025-11-25' });
    const viaGateway = await runConformance(`${gw.url}/mcp/stateless`, { revision: '2025-11-25' });
    assertSame(t, `2025-11-25, translated to ${V2026}`, direct, viaGateway, 25);
  });
});
