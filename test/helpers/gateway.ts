import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';
import { Gateway, type GatewayOptions } from '../../src/gateway.ts';
import { createLogger } from '../../src/ops/logger.ts';
import { spawnChild, waitForLine, type Child } from './process.ts';

export const TEST_SECRET = 'test-secret-0123456789-abcdefghijklmnop';

/** Defaults for a test gateway: random ports, quiet logs, a shared session key. */
function withDefaults(doc: Record<string, unknown>): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    metrics: { host: '127.0.0.1', port: 0 },
    session: { secret: TEST_SECRET },
    log: { level: process.env.TEST_LOG_LEVEL ?? 'silent' },
    ...doc,
  };
}

/** A gateway in this process; `opts` may bring a logger, and the `env` config references resolve against. */
export async function startGateway(doc: Record<string, unknown>, opts: GatewayOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<Gateway> {
  const { env = {}, ...gatewayOptions } = opts;
  const { config } = loadConfig({ document: withDefaults(doc), env });
  return Gateway.start(config, { logger: createLogger(config.log.level), defaultMetrics: false, ...gatewayOptions });
}

export interface GatewayProcess {
  readonly url: string;
  readonly metricsUrl: string;
  readonly child: Child;
  readonly configFile: string;
  stop(): Promise<void>;
}

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

/** A gateway in its own process (for SIGKILL/SIGTERM/SIGHUP tests), running the CLI from source; `args` are more CLI options. */
export async function spawnGateway(doc: Record<string, unknown>, env: NodeJS.ProcessEnv = {}, args: readonly string[] = []): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'mcpgw-test-'));
  const configFile = join(dir, 'config.yaml');
  writeFileSync(configFile, stringify(withDefaults({ log: { level: 'info' }, ...doc })));
  const child = spawnChild(process.execPath, [CLI, '--config', configFile, ...args], { env: { PATH: process.env.PATH, ...env } });
  const { url, metrics } = await waitForLine(child, (l) => {
    try {
      const v = JSON.parse(l) as { msg?: string; url?: string; metrics?: string };
      return v.msg === 'gateway listening' ? { url: v.url!, metrics: v.metrics ?? '' } : undefined;
    } catch {
      return undefined;
    }
  });
  // Its folder goes with it: nothing a test makes is left behind.
  const stop = async () => {
    await child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  return { url, metricsUrl: metrics, child, configFile, stop };
}
