import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { CONFIG_SCHEMA } from '../../src/config/schema.ts';
import { AUTH_FAILURE_REASONS, Metrics, RATE_LIMIT_SCOPES, RELOAD_OUTCOMES, REQUEST_STATUSES, RESUME_OUTCOMES } from '../../src/ops/metrics.ts';
import { ANSWER_ERROR_TYPES } from '../../src/protocol/answers.ts';

const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

/** Every key path of the schema, maps as `<name>` and list items as `[]`. */
function paths(schema: Record<string, unknown>, prefix: string): string[] {
  const out: string[] = [];
  const props = schema.properties as Record<string, Record<string, unknown>> | undefined;
  for (const [k, sub] of Object.entries(props ?? {})) {
    const p = prefix ? `${prefix}.${k}` : k;
    // Lists of `{ host, port }` are documented as one key.
    const itemProps = (sub.items as Record<string, unknown> | undefined)?.properties as Record<string, unknown> | undefined;
    const hostPortList = sub.type === 'array' && itemProps !== undefined && Object.keys(itemProps).join() === 'host,port';
    if (hostPortList) {
      out.push(p);
      continue;
    }
    const nested = sub.properties || (sub.type === 'array' && itemProps);
    // Objects are documented through their leaves (servers and probe have rows of their own).
    if (!nested || p.endsWith('.probe') || p === 'servers') out.push(p);
    if (sub.type === 'array' && sub.items && (sub.items as Record<string, unknown>).properties) out.push(...paths(sub.items as Record<string, unknown>, `${p}[]`));
    else out.push(...paths(sub, p));
    const extra = sub.additionalProperties;
    if (extra && typeof extra === 'object' && (extra as Record<string, unknown>).properties) out.push(...paths(extra as Record<string, unknown>, `${p}.<name>`));
  }
  return out;
}

it('documents every configuration key in docs/configuration.md', () => {
  const all = paths(CONFIG_SCHEMA as unknown as Record<string, unknown>, '');
  assert.ok(all.length > 30);
  const missing = all.filter((p) => !doc.includes(`| \`${p}\` |`));
  assert.deepEqual(missing, [], 'undocumented keys');
});

it('documents every metric, and every value of its closed labels, in docs/observability.md', () => {
  const observability = readFileSync(new URL('../../docs/observability.md', import.meta.url), 'utf8');
  const m = new Metrics({ defaultMetrics: false, toolLabels: true });
  m.watchRedis(() => true);
  const names = m.registry.getMetricsAsArray().map((x) => x.name);
  assert.ok(names.length > 15);
  const missing = names.filter((n) => !observability.includes(`| \`${n}\` |`));
  assert.deepEqual(missing, [], 'undocumented metrics');
  const values = [...AUTH_FAILURE_REASONS, ...RESUME_OUTCOMES, ...RATE_LIMIT_SCOPES, ...REQUEST_STATUSES, ...RELOAD_OUTCOMES, ...ANSWER_ERROR_TYPES].filter((v) => !observability.includes(`\`${v}\``));
  assert.deepEqual(values, [], 'undocumented label values');
});
