#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { loadConfig } from './config/load.ts';
import { redactConfig } from './config/redact.ts';
import { ConfigError } from './errors.ts';
import { Gateway } from './gateway.ts';
import { createLogger } from './ops/logger.ts';
import { ConfigReloader } from './reload.ts';

const USAGE = `Usage: mcp-gateway [--config FILE] [--watch-config] [--print-config]

  --config FILE    YAML configuration (or MCPGW_CONFIG=FILE); MCPGW_* variables override it.
                   Without one, the bundled demo server is published as "demo".
                   SIGHUP re-reads it (docs/configuration.md#reload).
  --watch-config   Also re-read it whenever the file changes.
  --print-config   Print the effective configuration, secrets redacted, and exit.
  --version        Print the version and exit.
  --help           This text.
`;

async function main(): Promise<number> {
  let values: { config?: string; 'watch-config'?: boolean; 'print-config'?: boolean; help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        'watch-config': { type: 'boolean' },
        'print-config': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    }));
  } catch (err) {
    process.stderr.write(`mcp-gateway: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }

  const load = () => loadConfig({ file: values.config });
  let loaded;
  try {
    loaded = load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mcp-gateway: invalid configuration:\n${err.message.replace(/^/gm, '  ')}\n`);
      return 1;
    }
    throw err;
  }
  if (values['print-config']) {
    process.stdout.write(stringify(redactConfig(loaded.effective)));
    return 0;
  }

  const logger = createLogger(loaded.config.log.level);
  if (loaded.embedded) logger.info('no config file given: publishing the bundled demo server as "demo" (in-memory store)');
  // Before the gateway starts: Node's default for SIGHUP is to end the process.
  let reloader: ConfigReloader | undefined;
  const onHangUp = () => {
    if (reloader) void reloader.reload('SIGHUP');
    else logger.warn('SIGHUP while starting or stopping: ignored');
  };
  process.on('SIGHUP', onHangUp);
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(loaded.config, { logger });
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, 'cannot start');
    return 1;
  }
  const file = values.config ?? process.env.MCPGW_CONFIG;
  reloader = new ConfigReloader(gateway, loaded, load, logger, file);
  if (values['watch-config']) {
    if (file) reloader.watch(file);
    else logger.warn('--watch-config without a config file: nothing to watch');
  }
  if (loaded.embedded) {
    logger.info(`try it: npx @modelcontextprotocol/inspector --cli ${gateway.url}/mcp/demo --transport http --method tools/list`);
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        resolve(1);
        return;
      }
      stopping = true;
      reloader?.close();
      reloader = undefined;
      logger.info({ signal }, 'signal received');
      gateway.shutdown().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

main().then(
  (code) => {
    process.exitCode = code;
    // Anything left (keep-alive sockets, timers) must not hold the process after a clean stop.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (err: unknown) => {
    process.stderr.write(`mcp-gateway: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
