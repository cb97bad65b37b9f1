// `npm run dashboards`: renders the Grafana dashboards and the Prometheus alert rules from their
// TypeScript sources into the checked-in files. test/unit/observability.test.ts fails when they differ.
import { mkdirSync, writeFileSync } from 'node:fs';
import { renderDashboards } from '../grafana/src/dashboards.ts';
import { renderAlerts, renderAlertTests } from '../prometheus/src/alerts.ts';

const root = new URL('../', import.meta.url);
mkdirSync(new URL('grafana/dashboards/', root), { recursive: true });
for (const [file, text] of renderDashboards()) {
  writeFileSync(new URL(`grafana/dashboards/${file}`, root), text);
  console.log(`wrote grafana/dashboards/${file}`);
}
writeFileSync(new URL('prometheus/alerts.yml', root), renderAlerts());
console.log('wrote prometheus/alerts.yml');
writeFileSync(new URL('prometheus/alerts.test.yml', root), renderAlertTests());
console.log('wrote prometheus/alerts.test.yml');
