import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startListening, type Child } from './process.ts';

/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`, server mode), run as a
 * child process with this Node, plus our own reference server for it to test.
 */

export const CONFORMANCE_SERVER = fileURLToPath(new URL('./conformance-server.ts', import.meta.url));

/** The revision whose frozen requirement set we run (`--requirements`). */
export const CONFORMANCE_REVISION = '2025-11-25';

export interface ScenarioResult {
  readonly pass: boolean;
  /** `check-id: message` of every FAILURE check. */
  readonly failures: string[];
  /** `check-id: message` of every WARNING check (a scenario with warnings still passes). */
  readonly warnings: string[];
}

interface Check {
  id: string;
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO' | 'SKIPPED';
  errorMessage?: string;
}

/** The CLI's entry point, resolved from the installed package's `bin` (no npx, no PATH lookup). */
function conformanceBin(): string {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve('@modelcontextprotocol/conformance/package.json');
  const { bin } = require(pkgJson) as { bin: string | Record<string, string> };
  const entry = typeof bin === 'string' ? bin : bin.conformance;
  if (!entry) throw new Error('@modelcontextprotocol/conformance has no "conformance" bin');
  return join(dirname(pkgJson), entry);
}

/** `server-<scenario>-<ISO timestamp with - for : and .>` */
const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

/**
 * Runs the server-mode suite (the `CONFORMANCE_REVISION` requirement set, scored and not-scored
 * scenarios alike) against `url` and returns each scenario's outcome. A scenario passes when none of
 * its checks is a FAILURE. The CLI's exit code only says whether something failed, so it is not an error here.
 */
export async function runConformance(url: string, opts: { timeoutMs?: number; revision?: string; scenario?: string } = {}): Promise<Map<string, ScenarioResult>> {
  const out = await mkdtemp(join(tmpdir(), 'mcpgw-conformance-'));
  try {
    // One scenario runs at the revision's wire whether or not its requirement set names it (a pending one).
    const which = opts.scenario ? ['--scenario', opts.scenario, '--spec-version', opts.revision ?? CONFORMANCE_REVISION] : ['--requirements', opts.revision ?? CONFORMANCE_REVISION];
    const args = [conformanceBin(), 'server', '--url', url, ...which, '--timeout', '20000', '-o', out];
    const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
      execFile(process.execPath, args, { timeout: opts.timeoutMs ?? 90_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
        if (err && (err.killed || typeof err.code !== 'number')) reject(new Error(`conformance CLI did not finish: ${err.message}\n${stderr}`));
        else resolve({ stdout, stderr });
      });
    });

    const results = new Map<string, ScenarioResult>();
    for (const entry of await readdir(out)) {
      const scenario = RESULT_DIR.exec(entry)?.[1];
      if (!scenario) continue;
      const checks = JSON.parse(await readFile(join(out, entry, 'checks.json'), 'utf8')) as Check[];
      const describe = (c: Check) => `${c.id}: ${c.errorMessage ?? '(no message)'}`;
      const failures = checks.filter((c) => c.status === 'FAILURE').map(describe);
      const warnings = checks.filter((c) => c.status === 'WARNING').map(describe);
      results.set(scenario, { pass: failures.length === 0, failures, warnings });
    }
    if (results.size === 0) throw new Error(`conformance CLI produced no results for ${url}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    return results;
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

export interface ConformanceServerProcess {
  /** The MCP endpoint, `http://127.0.0.1:<port>/mcp`. */
  readonly url: string;
  readonly child: Child;
  stop(): Promise<void>;
}

/** Our reference server in its own process, on a random loopback port. */
export async function startConformanceServer(): Promise<ConformanceServerProcess> {
  const { child, port } = await startListening(CONFORMANCE_SERVER);
  return { url: `http://127.0.0.1:${port}/mcp`, child, stop: () => child.kill('SIGTERM') };
}
