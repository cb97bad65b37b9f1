import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { ConfigError } from '../errors.ts';
import { redactConfig } from './redact.ts';
import type { GatewayConfig, ServerConfig } from './types.ts';

/**
 * What a configuration reload (SIGHUP) changes, worked out before anything is touched. Keys whose
 * objects are built once per process — the listeners, Redis, the session sealing key, the event
 * log, the translation pool — cannot change live: the running value is kept, and the reload
 * names each one that differed. A change of `auth.mode` is refused (see planReload).
 */
export interface ReloadPlan {
  /** The configuration to run: the new one, with the running value of every key that cannot change. */
  readonly config: GatewayConfig;
  /** Keys that differ in the new file but cannot change without a restart (kept as they run). */
  readonly kept: readonly string[];
  readonly added: readonly string[];
  readonly removed: readonly string[];
  /** Servers whose upstream side changed (replicas, credentials, pool limits…): a new pool, the old one drained. */
  readonly rebuilt: readonly string[];
  /** Servers whose policy, cache, retries, time limits, per-tool limits or rate limits changed: read per request, nothing to rebuild. */
  readonly changed: readonly string[];
  /** Whether anything at all differs. */
  readonly differs: boolean;
}

/**
 * Server keys only the pipeline reads, at request time from the live configuration; any other
 * key (those the upstream pools are built from, and any key added later) rebuilds the pool.
 */
const PIPELINE_KEYS: ReadonlySet<string> = new Set(['policy', 'cache', 'retry', 'timeout', 'tools', 'rateLimit', 'era']);

export function planReload(running: GatewayConfig, next: GatewayConfig): ReloadPlan {
  const kept: string[] = [];
  const keep = <T>(key: string, now: T, then: T): T => {
    if (isDeepStrictEqual(now, then)) return then;
    kept.push(key);
    return now;
  };
  // Every server's policy is resolved against the auth mode: keeping the mode under policies
  // written for another one could open a server. Such a file is refused as a whole.
  if (running.auth.mode !== next.auth.mode) {
    throw new ConfigError(`config key auth.mode cannot change without a restart (running: ${running.auth.mode}, file: ${next.auth.mode}); nothing of the file was applied`);
  }
  const config: GatewayConfig = {
    ...next,
    listen: keep('listen', running.listen, next.listen),
    metrics: keep('metrics', running.metrics, next.metrics),
    redis: keep('redis', running.redis, next.redis),
    events: keep('events', running.events, next.events),
    translation: keep('translation', running.translation, next.translation),
    telemetry: keep('telemetry', running.telemetry, next.telemetry),
    session: { ...next.session, secret: keep('session.secret', running.session.secret, next.session.secret) },
    cache: { ...next.cache, maxEntries: keep('cache.maxEntries', running.cache.maxEntries, next.cache.maxEntries), maxBytes: keep('cache.maxBytes', running.cache.maxBytes, next.cache.maxBytes) },
  };
  const added = Object.keys(next.servers).filter((name) => !Object.hasOwn(running.servers, name));
  const removed = Object.keys(running.servers).filter((name) => !Object.hasOwn(next.servers, name));
  const rebuilt: string[] = [];
  const changed: string[] = [];
  for (const [name, server] of Object.entries(next.servers)) {
    const before = Object.hasOwn(running.servers, name) ? running.servers[name] : undefined;
    if (!before || isDeepStrictEqual(before, server)) continue;
    if (!isDeepStrictEqual(upstreamSide(before), upstreamSide(server))) rebuilt.push(name);
    else changed.push(name);
  }
  // compose: a virtual server holds its members' pools, so it is rebuilt with any of them.
  for (const [name, server] of Object.entries(next.servers)) {
    if (server.compose && !rebuilt.includes(name) && server.compose.some((m) => rebuilt.includes(m))) rebuilt.push(name);
  }
  const differs = kept.length > 0 || added.length > 0 || removed.length > 0 || rebuilt.length > 0 || changed.length > 0 || !isDeepStrictEqual(running, config);
  return { config, kept, added, removed, rebuilt, changed, differs };
}

function upstreamSide(server: ServerConfig): Record<string, unknown> {
  return Object.fromEntries(Object.entries(server).filter(([key]) => !PIPELINE_KEYS.has(key)));
}

/**
 * A short fingerprint of a loaded configuration, for the `mcp_config_info{hash}` label: the
 * effective document as `--print-config` shows it (secrets redacted, so the label gives nothing
 * of them away; a secret rotated in its file alone does not change it), keys sorted.
 */
export function configHash(effective: Readonly<Record<string, unknown>>): string {
  return createHash('sha256').update(canonicalJson(redactConfig(effective))).digest('hex').slice(0, 16);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * A GatewayConfig whose every section is read from `current()` when it is read: what is built once
 * and reads the configuration per request (the pipeline's stages) follows a reload through it.
 */
export function liveConfig(current: () => GatewayConfig): GatewayConfig {
  const view = {};
  for (const key of Object.keys(current())) {
    Object.defineProperty(view, key, { enumerable: true, get: () => current()[key as keyof GatewayConfig] });
  }
  return Object.freeze(view) as GatewayConfig;
}
