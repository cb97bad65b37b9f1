import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, mkdtempSync } from 'node:fs';
import { startConformanceServer } from './helpers/conformance.ts';
import { startGateway } from './helpers/gateway.ts';
const up = await startConformanceServer();
const gw = await startGateway({ servers: { ref: { upstreams: [{ url: up.url }] } } });
const bin = 'node_modules/@modelcontextprotocol/conformance/dist/index.js';
const sig: Record<string, string[]> = {};
try {
  for (const [label, url] of [['direct', up.url], ['gateway', `${gw.url}/mcp/ref`]] as const) {
    const out = mkdtempSync('/tmp/cfp-');
    try { execFileSync(process.execPath, [bin, 'server', '--url', url, '--requirements', '2025-11-25', '-o', out], { stdio: 'ignore' }); } catch {}
    sig[label] = readdirSync(out).sort().flatMap((d) => (JSON.parse(readFileSync(`${out}/${d}/checks.json`, 'utf8')) as {id:string;status:string;description:string}[]).map((c) => `${d.replace(/-\d{4}-.*$/, '')} ${c.id} ${c.status} ${c.id.startsWith('incoming') || c.id.startsWith('outgoing') ? '' : ''}`));
    console.log(label, out);
  }
} finally { await gw.close(); await up.stop(); }
const a = sig.direct!, b = sig.gateway!;
console.log(a.length, b.length);
for (const x of a) if (!b.includes(x)) console.log('only direct:', x);
for (const x of b) if (!a.includes(x)) console.log('only gateway:', x);
