import { execFile, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ENV_SCRIPT = fileURLToPath(new URL('../../scripts/docker-env.sh', import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; never rejects (the caller asserts on `code`). */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd ?? REPO, timeout: opts.timeoutMs ?? 300_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** A private Docker engine started by scripts/docker-env.sh; `skip` says why there is none. */
export interface Engine {
  readonly skip?: string;
  readonly env: NodeJS.ProcessEnv;
  readonly dir: string;
  docker(args: string[], timeoutMs?: number): Promise<Run>;
  /** Like docker(), but throws with the command's output when it fails. */
  must(args: string[], timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

export async function startEngine(): Promise<Engine> {
  const started = Date.now();
  const res = await run('bash', [ENV_SCRIPT, 'start'], { timeoutMs: 600_000 });
  if (res.code === 77) return skipped(res.stderr.trim().split('\n').at(-1) ?? 'docker-env.sh: cannot run here');
  if (res.code !== 0) throw new Error(`scripts/docker-env.sh start failed (${res.code}):\n${res.stderr}`);
  const vars = Object.fromEntries(res.stdout.trim().split('\n').map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]));
  const dir = vars.MCPGW_DOCKER_DIR!;
  // The legacy builder: --network host works with it, and it needs no buildx plugin.
  const env = { ...process.env, DOCKER_HOST: vars.DOCKER_HOST, DOCKER_BUILDKIT: '0', COMPOSE_DOCKER_CLI_BUILD: '0' };
  let stopped = false;
  const stopSync = () => {
    if (!stopped) spawnSync('bash', [ENV_SCRIPT, 'stop', dir], { stdio: 'ignore' });
  };
  // Backstop: the engine must not outlive the test process, even when it crashes.
  process.once('exit', stopSync);
  const docker = (args: string[], timeoutMs?: number) => run('docker', args, { env, timeoutMs });
  console.log(`# docker engine ready in ${((Date.now() - started) / 1000).toFixed(1)}s (${dir})`);
  return {
    env,
    dir,
    docker,
    async must(args, timeoutMs) {
      const r = await docker(args, timeoutMs);
      if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
      return r.stdout.trim();
    },
    async stop() {
      if (stopped) return;
      const r = await run('bash', [ENV_SCRIPT, 'stop', dir]);
      stopped = true;
      process.off('exit', stopSync);
      if (r.code !== 0) throw new Error(`scripts/docker-env.sh stop failed:\n${r.stderr}`);
    },
  };
}

function skipped(reason: string): Engine {
  const fail = () => Promise.reject(new Error(reason));
  console.log(`#\n# SKIPPED: the Docker image, replica and compose tests: ${reason}\n#`);
  return { skip: reason, env: process.env, dir: '', docker: fail, must: fail, stop: async () => {} };
}

/** Polls `probe` until it returns true (or throws the last error) within `ms`. */
export async function waitFor(what: string, probe: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** True when GET url answers 2xx. */
export async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  await res.arrayBuffer();
  return res.ok;
}
