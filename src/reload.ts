import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { LoadedConfig } from './config/load.ts';
import { configHash } from './config/reload.ts';
import type { Gateway } from './gateway.ts';
import type { ReloadOutcome } from './ops/metrics.ts';

/** Events of a watched directory come in bursts (a ConfigMap update renames a symlink, and more): one look after the last. */
const WATCH_SETTLE_MS = 250;
/** A reload reads the file once it stayed the same this long; one that keeps changing for this many looks is refused. */
const SETTLE_LOOKS = 20;

export type ReloadTrigger = 'SIGHUP' | 'watch';

/**
 * Re-reads the configuration on SIGHUP (and, with `--watch-config`, when the file changes) and
 * hands it to the running gateway. A file that does not load — YAML error, unknown key, failed
 * validation, unreadable secret file — is refused with a log line naming the key, and the running
 * configuration stays. Counted in `mcp_config_reloads_total{outcome}`; `mcp_config_info{hash}`
 * names the configuration that runs.
 */
export class ConfigReloader {
  readonly #gw: Gateway;
  readonly #load: () => LoadedConfig;
  readonly #log: Logger;
  /** The configuration file, when there is one. */
  readonly #file: string | undefined;
  #hash: string;
  #watcher: FSWatcher | undefined;
  #settle: NodeJS.Timeout | undefined;
  #seen: string | undefined;
  /** The reload under way: another waits for it, so two never interleave. */
  #running: Promise<unknown> = Promise.resolve();
  /** The gateway is stopping: a reload still settling applies nothing. */
  #closed = false;

  constructor(gw: Gateway, loaded: LoadedConfig, load: () => LoadedConfig, log: Logger, file?: string) {
    this.#gw = gw;
    this.#load = load;
    this.#log = log;
    this.#file = file;
    this.#hash = configHash(loaded.effective);
    gw.metrics.configLoaded(this.#hash);
  }

  /**
   * Reloads once the file has stopped changing. A file caught half-written is often valid YAML
   * (cut before a server's `auth` or `curation`, or before the next servers): read at once, it
   * ran without those policies and servers until the next reload.
   */
  reload(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    const run = this.#running.then(() => this.#reloadSettled(trigger));
    this.#running = run.catch(() => undefined);
    return run;
  }

  async #reloadSettled(trigger: ReloadTrigger): Promise<ReloadOutcome> {
    if (this.#file !== undefined && !(await settled(this.#file))) {
      return this.#refused(trigger, `config file ${this.#file} kept changing for ${(SETTLE_LOOKS * WATCH_SETTLE_MS) / 1000} s; write it whole (a new file renamed over it), then reload`);
    }
    if (this.#closed) return 'unchanged';
    let loaded: LoadedConfig;
    let plan: ReturnType<Gateway['reconfigure']>;
    try {
      loaded = this.#load();
      plan = this.#gw.reconfigure(loaded.config);
    } catch (err) {
      // A ConfigError's message names the key (one line per problem).
      return this.#refused(trigger, (err as Error).message);
    }
    this.#hash = configHash(loaded.effective);
    this.#gw.metrics.configLoaded(this.#hash);
    const outcome: ReloadOutcome = plan.differs ? 'applied' : 'unchanged';
    this.#gw.metrics.configReloads.inc({ outcome });
    const { added, removed, rebuilt, changed, kept } = plan;
    const fields = { trigger, outcome, hash: this.#hash, added, removed, rebuilt, changed, kept };
    if (kept.length > 0) this.#log.warn(fields, `configuration reloaded; kept as running (a restart changes them): ${kept.join(', ')}`);
    else this.#log.info(fields, 'configuration reloaded');
    return outcome;
  }

  #refused(trigger: ReloadTrigger, error: string): ReloadOutcome {
    this.#gw.metrics.configReloads.inc({ outcome: 'refused' });
    this.#log.error({ trigger, hash: this.#hash, error }, 'configuration reload refused; the running configuration stays');
    return 'refused';
  }

  /**
   * Reloads when `file` changes. The folder is watched, not the file: editors and Kubernetes
   * (a ConfigMap volume swaps a symlink) replace the file rather than write into it. Only a change
   * of the file's bytes reloads, and a blank or unreadable file is passed over (a writer that
   * truncates first); a file caught half-written is refused like any bad file, and the next change
   * is looked at again.
   */
  watch(file: string): void {
    this.#seen = digest(file);
    this.#watcher = watch(dirname(file), () => {
      clearTimeout(this.#settle);
      this.#settle = setTimeout(() => {
        const now = digest(file);
        if (now === undefined || now === this.#seen) return;
        this.#seen = now;
        void this.reload('watch');
      }, WATCH_SETTLE_MS);
    });
    this.#watcher.on('error', (err) => this.#log.warn({ err: err.message }, 'config file watch failed; SIGHUP still reloads'));
    this.#watcher.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#settle);
    this.#watcher?.close();
  }
}

/** Whether `file` reads the same twice WATCH_SETTLE_MS apart, within SETTLE_LOOKS looks. */
async function settled(file: string): Promise<boolean> {
  let last = digest(file);
  for (let i = 0; i < SETTLE_LOOKS; i++) {
    await sleep(WATCH_SETTLE_MS);
    const now = digest(file);
    if (now === last) return true;
    last = now;
  }
  return false;
}

/** The file's fingerprint; undefined when it cannot be read or is blank (a writer that truncated first and has not written yet). */
function digest(file: string): string | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    return undefined;
  }
  return bytes.toString('utf8').trim() === '' ? undefined : createHash('sha256').update(bytes).digest('hex');
}
