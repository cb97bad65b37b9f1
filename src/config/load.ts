import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import { ConfigError } from '../errors.ts';
import { toMs, type Duration } from './duration.ts';
import { exchangesCallerTokens, resolveAudit, resolveAuth, resolveCredentials, resolveListenTls, resolvePolicy, resolveUpstreamTls, type RawAuth, type RawCredentials, type RawServerAuth } from './auth.ts';
import { checkComposition } from './compose.ts';
import { resolveCuration, type RawCuration } from './curation.ts';
import { isToolName } from '../protocol/names.ts';
import { applyEnv } from './env.ts';
import { publicUrl } from './redact.ts';
import { CONFIG_SCHEMA } from './schema.ts';
import { MAX_CACHE_TTL_MS, type AuditConfig, type AuthConfig, type GatewayConfig, type RedisConfig, type RetryConfig, type ServerConfig, type ToolLimits, type UpstreamConfig } from './types.ts';
import { resolveTelemetry, type RawTelemetry } from './telemetry.ts';

export interface LoadedConfig {
  /** As written (file + environment + defaults), for `--print-config`. */
  readonly effective: Readonly<Record<string, unknown>>;
  readonly config: GatewayConfig;
  /** True when no file was given and the bundled demo server was published. */
  readonly embedded: boolean;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, strictRequired: false, allowUnionTypes: true });
const validate = ajv.compile(CONFIG_SCHEMA);

/** Path of the bundled demo upstream, next to this module (dist/demo/server.js or src/…ts). */
export function demoServerPath(): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(`../demo/server${ext}`, import.meta.url));
}

export interface LoadOptions {
  /** YAML file; defaults to MCPGW_CONFIG. */
  readonly file?: string | undefined;
  /** An already parsed document instead of a file (tests, embedding). */
  readonly document?: Record<string, unknown>;
  /** Defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv;
}

export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.MCPGW_CONFIG;
  const raw: Record<string, unknown> = opts.document ? structuredClone(opts.document) : file ? readYaml(file) : {};
  applyEnv(raw, CONFIG_SCHEMA, env);

  const embedded = !file && !opts.document && (raw.servers === undefined || Object.keys(raw.servers as object).length === 0);
  if (embedded) {
    raw.servers = { demo: { upstreams: [{ command: process.execPath, args: [demoServerPath()] }] } };
  }

  if (!validate(raw)) throw new ConfigError(describeErrors(validate.errors ?? []));
  const config = resolve(raw, env);
  return { effective: deepFreeze(raw), config: deepFreeze(config), embedded };
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : '';
    throw new ConfigError(`config file ${file} is not valid YAML${where}: ${e.message.split('\n')[0]}`);
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`config file ${file} must be a YAML mapping`);
  return value as Record<string, unknown>;
}

function keyPath(instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  let out = '';
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || '(root)';
}

function describeErrors(errors: ErrorObject[]): string {
  // oneOf/anyOf failures repeat the branch errors; report the most specific, once each.
  const lines = new Set<string>();
  for (const e of errors) {
    if (e.keyword === 'additionalProperties') {
      lines.add(`config key ${keyPath(e.instancePath, String(e.params.additionalProperty))} is not allowed (unknown key)`);
    } else if (e.keyword === 'required' && e.schemaPath.includes('/oneOf/')) {
      continue; // the oneOf line below names the alternatives
    } else if (e.keyword === 'required') {
      lines.add(`config key ${keyPath(e.instancePath, String(e.params.missingProperty))} is required`);
    } else if (e.keyword === 'propertyNames') {
      lines.add(`config key ${keyPath(e.instancePath, String(e.params.propertyName))}: name must match ${'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}'}`);
    } else if (e.keyword === 'oneOf' && e.instancePath === '/redis') {
      lines.add('config key redis needs exactly one of: url, sentinels + name, or cluster');
    } else if (e.keyword === 'oneOf' && /^\/servers\/[^/]+$/.test(e.instancePath)) {
      // compose: a server has upstreams or compose; neither is the usual mistake.
      if (e.params.passingSchemas) lines.add(`config key ${keyPath(e.instancePath)} needs exactly one of "upstreams" or "compose"`);
      else lines.add(`config key ${keyPath(e.instancePath, 'upstreams')} is required (or "compose", for a virtual server)`);
    } else if (e.keyword === 'oneOf' && e.instancePath.includes('/upstreams/')) {
      lines.add(`config key ${keyPath(e.instancePath)} must have exactly one of "url" (Streamable HTTP) or "command" (stdio)`);
    } else if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if') {
      continue;
    } else if (e.keyword === 'pattern' && e.schemaPath.includes('anyOf')) {
      lines.add(`config key ${keyPath(e.instancePath)} is not a duration (e.g. 500ms, 30s, 5m, 1h)`);
    } else if (e.keyword === 'type' && e.schemaPath.includes('anyOf')) {
      continue;
    } else {
      lines.add(`config key ${keyPath(e.instancePath)} ${e.message ?? 'is invalid'}`);
    }
  }
  if (lines.size === 0) lines.add(`config is invalid: ${ajv.errorsText(errors)}`);
  return [...lines].join('\n');
}

/**
 * auth: an upstream that gets a token for the caller (credentials.tokenExchange) may answer each
 * caller differently, so what the cache keeps of it — directly or through a virtual server — is
 * each caller's own, as with `cache.perUser`.
 */
function cachePerCallerWhereTokensAreExchanged(servers: Record<string, ServerConfig>): void {
  for (const [name, server] of Object.entries(servers)) {
    if (!server.cache || server.cache.perUser) continue;
    if (exchangesCallerTokens(server) || server.compose?.some((m) => exchangesCallerTokens(servers[m]))) servers[name] = { ...server, cache: { ...server.cache, perUser: true } };
  }
}

const HTTP_ONLY = ['headers', 'connections', 'credentials', 'tls', 'transport'] as const;
const STDIO_ONLY = ['args', 'env', 'cwd'] as const;

type RawListen = Omit<GatewayConfig['listen'], 'tls' | 'headersTimeoutMs' | 'requestTimeoutMs' | 'keepAliveTimeoutMs'> & {
  headersTimeout: Duration;
  requestTimeout: Duration;
  keepAliveTimeout: Duration;
  tls?: Parameters<typeof resolveListenTls>[0];
};

function resolve(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): GatewayConfig {
  // The schema has run, so the shapes below hold; the casts only name them.
  const r = raw as {
    listen: RawListen;
    metrics: GatewayConfig['metrics'];
    redis?: Omit<RedisConfig, 'url'> & { url?: string };
    events: { ttl: Duration; maxLength: number; keepAlive: Duration; retry: Duration; maxBuffer: number; detachedGrace: Duration; endedTtl: Duration; replicaAcks: number; replicaAckTimeout: Duration };
    session: { secret?: string; secretFile?: string; maxLifetime: Duration };
    auth: RawAuth;
    audit: AuditConfig;
    cache: GatewayConfig['cache'];
    log: { level: string };
    shutdown: { grace: Duration };
    translation: { maxSessions: number; sessionsPerCaller: number; sessionIdle: Duration; inputTimeout: Duration; eraProbeTtl: Duration };
    servers: Record<string, Record<string, unknown>>;
    telemetry: RawTelemetry;
  };
  if (r.session.secret && r.session.secretFile) {
    throw new ConfigError('config keys session.secret and session.secretFile are exclusive; set one');
  }
  let secret = r.session.secret;
  if (r.session.secretFile) {
    try {
      secret = readFileSync(r.session.secretFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`config key session.secretFile: cannot read ${r.session.secretFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    if (secret.length < 32) throw new ConfigError('config key session.secretFile: the secret must be at least 32 characters');
  }
  const auth = resolveAuth(r.auth);
  const servers: Record<string, ServerConfig> = {};
  for (const [name, s] of Object.entries(r.servers)) servers[name] = resolveServer(name, s, auth, env);
  // compose: members must exist and be plain servers; their prefixes must not be ambiguous.
  checkComposition(servers);
  cachePerCallerWhereTokensAreExchanged(servers);
  return {
    listen: resolveListen(r.listen, auth.mode),
    metrics: r.metrics,
    redis: r.redis
      ? {
          url: r.redis.url,
          sentinels: r.redis.sentinels,
          name: r.redis.name,
          cluster: r.redis.cluster,
          password: r.redis.password,
          db: r.redis.db,
          keyPrefix: r.redis.keyPrefix,
        }
      : undefined,
    events: {
      ttlMs: toMs(r.events.ttl, 'events.ttl'),
      maxLength: r.events.maxLength,
      keepAliveMs: toMs(r.events.keepAlive, 'events.keepAlive'),
      retryMs: toMs(r.events.retry, 'events.retry'),
      maxBuffer: r.events.maxBuffer,
      detachedGraceMs: toMs(r.events.detachedGrace, 'events.detachedGrace'),
      endedTtlMs: toMs(r.events.endedTtl, 'events.endedTtl'),
      replicaAcks: r.events.replicaAcks,
      replicaAckTimeoutMs: toMs(r.events.replicaAckTimeout, 'events.replicaAckTimeout'),
    },
    session: { secret, maxLifetimeMs: toMs(r.session.maxLifetime, 'session.maxLifetime') },
    auth,
    audit: resolveAudit(r.audit),
    cache: r.cache,
    log: r.log,
    shutdown: { graceMs: toMs(r.shutdown.grace, 'shutdown.grace') },
    translation: {
      maxSessions: r.translation.maxSessions,
      sessionsPerCaller: r.translation.sessionsPerCaller,
      sessionIdleMs: toMs(r.translation.sessionIdle, 'translation.sessionIdle'),
      inputTimeoutMs: toMs(r.translation.inputTimeout, 'translation.inputTimeout'),
      eraProbeTtlMs: toMs(r.translation.eraProbeTtl, 'translation.eraProbeTtl'),
    },
    servers,
    // traces: the `telemetry` section under the OTEL_* environment; undefined when off.
    telemetry: resolveTelemetry(r.telemetry, env),
  };
}

function resolveServer(name: string, s: Record<string, unknown>, auth: AuthConfig, env: NodeJS.ProcessEnv): ServerConfig {
  const at = `servers.${name}`;
  const raw = (s.upstreams as Record<string, unknown>[] | undefined) ?? [];
  const names = replicaNames(at, raw);
  const upstreams = raw.map((u, i): UpstreamConfig => {
    const here = `${at}.upstreams[${i}]`;
    if (typeof u.url === 'string') {
      const stray = STDIO_ONLY.find((k) => k in u);
      if (stray) throw new ConfigError(`config key ${here}.${stray} is not allowed for a url (HTTP) upstream`);
      // legacy: a 2024-11-05 SSE replica's one stream is opened before, and outlives, any caller's token.
      if (u.transport === 'sse' && (u.credentials as RawCredentials | undefined)?.tokenExchange) throw new ConfigError(`config key ${here}.credentials.tokenExchange is not allowed with transport sse (Streamable HTTP upstreams only)`);
      return {
        // legacy: `transport: sse` is a 2024-11-05 HTTP+SSE replica.
        kind: u.transport === 'sse' ? 'sse' : 'http',
        name: names[i]!,
        url: u.url,
        headers: (u.headers as Record<string, string> | undefined) ?? {},
        connections: u.connections as number | undefined,
        // Present only when configured, so a plain upstream's config stays as small as before.
        ...(u.credentials ? { credentials: resolveCredentials(`${here}.credentials`, u.credentials as RawCredentials, env, u.url, auth.mode) } : {}),
        ...(u.tls ? { tls: resolveUpstreamTls(`${here}.tls`, u.tls as Parameters<typeof resolveUpstreamTls>[1]) } : {}),
      };
    }
    const stray = HTTP_ONLY.find((k) => k in u);
    if (stray) throw new ConfigError(`config key ${here}.${stray} is not allowed for a command (stdio) upstream`);
    return {
      kind: 'stdio',
      name: names[i]!,
      command: u.command as string,
      args: (u.args as string[] | undefined) ?? [],
      env: (u.env as Record<string, string> | undefined) ?? {},
      cwd: u.cwd as string | undefined,
    };
  });
  const kinds = new Set(upstreams.map((u) => u.kind));
  if (kinds.size > 1) throw new ConfigError(`config key ${at}.upstreams mixes ${[...kinds].map((k) => KIND_NAMES[k]).join(' and ')} upstreams; use one kind per server`);
  const probe = s.probe as { interval: Duration; timeout: Duration; path?: string } | undefined;
  // stateless: a stdio child is spoken to in the session era (one child per session).
  const era = s.era as ServerConfig['era'];
  if (era === 'stateless' && upstreams[0]?.kind === 'stdio') throw new ConfigError(`config key ${at}.era: stateless needs url (HTTP) upstreams; a command (stdio) upstream is spoken to in the session era`);
  return {
    name,
    upstreams,
    maxFails: s.maxFails as number,
    failTimeoutMs: toMs(s.failTimeout as Duration, `${at}.failTimeout`),
    requestTimeoutMs: toMs(s.requestTimeout as Duration, `${at}.requestTimeout`),
    probe: probe
      ? { intervalMs: toMs(probe.interval, `${at}.probe.interval`), timeoutMs: toMs(probe.timeout, `${at}.probe.timeout`), path: probe.path }
      : undefined,
    maxProcesses: s.maxProcesses as number,
    maxSessionsPerCaller: s.maxSessionsPerCaller as number,
    idleTimeoutMs: toMs(s.idleTimeout as Duration, `${at}.idleTimeout`),
    era: upstreams[0]?.kind === 'stdio' ? 'session' : era,
    policy: resolvePolicy(at, s.auth as RawServerAuth | undefined, auth, name),
    ...(s.compose ? { compose: s.compose as string[] } : {}),
    ...(s.curation ? { curation: resolveCuration(`${at}.curation`, s.curation as RawCuration) } : {}),
    ...resolveResilience(at, s),
  };
}

/**
 * Each replica's public name and key: `name` as configured, else its URL as publicUrl shows it
 * (no userinfo, query or fragment) or `stdio:<index>`. The name goes into metric labels, log lines
 * and the sealed session id, so it must be unique within the server and never secret; replicas
 * whose URLs differ only in what is hidden are told apart by their index (`…/mcp [1]`).
 */
function replicaNames(at: string, upstreams: readonly Record<string, unknown>[]): string[] {
  const names = upstreams.map((u, i) => {
    if (typeof u.name === 'string') return u.name;
    if (typeof u.url !== 'string') return `stdio:${i}`;
    try {
      return publicUrl(u.url);
    } catch {
      // Not the URL itself: it may hold a secret, and the message goes to logs and terminals.
      throw new ConfigError(`config key ${at}.upstreams[${i}].url is not a valid URL`);
    }
  });
  const seen = new Map<string, number>();
  for (const n of names) seen.set(n, (seen.get(n) ?? 0) + 1);
  return names.map((n, i) => {
    if (seen.get(n) === 1) return n;
    if (typeof upstreams[i]!.name === 'string' && names.indexOf(n) < i) throw new ConfigError(`config key ${at}.upstreams[${i}].name: "${n}" names two replicas`);
    return `${n} [${i}]`;
  });
}

function resolveListen(listen: RawListen, mode: AuthConfig['mode']): GatewayConfig['listen'] {
  const { headersTimeout, requestTimeout, keepAliveTimeout, tls, ...rest } = listen;
  const headersTimeoutMs = toMs(headersTimeout, 'listen.headersTimeout');
  const requestTimeoutMs = toMs(requestTimeout, 'listen.requestTimeout');
  const keepAliveTimeoutMs = toMs(keepAliveTimeout, 'listen.keepAliveTimeout');
  // 0 would mean "no limit" to Node: the hole these keys exist to close.
  if (headersTimeoutMs <= 0 || requestTimeoutMs <= 0 || keepAliveTimeoutMs <= 0) {
    throw new ConfigError('config keys listen.headersTimeout, listen.requestTimeout and listen.keepAliveTimeout must be longer than 0');
  }
  // The request time limit counts from the same start as the head's, so it includes it.
  if (headersTimeoutMs > requestTimeoutMs) throw new ConfigError('config key listen.headersTimeout must not be longer than listen.requestTimeout (which includes the head)');
  if (Array.isArray(rest.trustProxy)) {
    const bad = rest.trustProxy.find((p) => !isProxyAddress(p));
    if (bad !== undefined) throw new ConfigError(`config key listen.trustProxy: "${bad}" is not an IP address, a CIDR, or one of ${PROXY_NAMES.join(', ')}`);
  }
  return { ...rest, headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, tls: resolveListenTls(tls, mode) };
}

/** The names of address ranges Fastify's trustProxy knows. */
const PROXY_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

function isProxyAddress(p: string): boolean {
  if (PROXY_NAMES.includes(p)) return true;
  const slash = p.indexOf('/');
  const ip = slash === -1 ? p : p.slice(0, slash);
  const family = isIP(ip);
  if (family === 0) return false;
  if (slash === -1) return true;
  const bits = p.slice(slash + 1);
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

type RawRule = { requests: number; per: Duration };

/** Cache, retries, timeouts and rate limits of one server (src/resilience/). */
function resolveResilience(at: string, s: Record<string, unknown>): Pick<ServerConfig, 'cache' | 'retry' | 'timeout' | 'tools' | 'rateLimit'> {
  const cache = s.cache as { ttl: Duration; perUser: boolean; invalidateOn: Record<string, boolean> } | undefined;
  const retry = s.retry as { attempts: number; backoff: Duration; maxBackoff: Duration; budget: number; minPerSecond: number };
  const timeout = s.timeout as { idle: Duration; max: Duration };
  const limits = s.rateLimit as { principal?: RawRule; server?: RawRule; tools: Record<string, RawRule> } | undefined;
  const rule = (r: RawRule | undefined, path: string) => {
    if (!r) return undefined;
    const periodMs = toMs(r.per, `${path}.per`);
    if (periodMs <= 0) throw new ConfigError(`config key ${path}.per must be longer than 0`);
    return { requests: r.requests, periodMs };
  };
  const ttlMs = cache ? toMs(cache.ttl, `${at}.cache.ttl`) : 0;
  // Cache versions live a day longer than any entry (src/cache/result-cache.ts).
  if (ttlMs > MAX_CACHE_TTL_MS) throw new ConfigError(`config key ${at}.cache.ttl must be at most 24h`);
  const serverTimeout = resolveTimeout(at, timeout);
  const serverRetry: RetryConfig = {
    attempts: retry.attempts,
    backoffMs: toMs(retry.backoff, `${at}.retry.backoff`),
    maxBackoffMs: toMs(retry.maxBackoff, `${at}.retry.maxBackoff`),
    budget: retry.budget,
    minPerSecond: retry.minPerSecond,
  };
  return {
    cache: cache ? { ttlMs, perUser: cache.perUser, invalidateOn: cache.invalidateOn } : undefined,
    retry: serverRetry,
    timeout: serverTimeout,
    tools: Object.fromEntries(Object.entries(s.tools as Record<string, RawToolLimits>).map(([tool, t]) => [tool, resolveTool(`${at}.tools.${tool}`, tool, t, serverTimeout, serverRetry)])),
    rateLimit: limits
      ? {
          principal: rule(limits.principal, `${at}.rateLimit.principal`),
          server: rule(limits.server, `${at}.rateLimit.server`),
          tools: Object.fromEntries(Object.entries(limits.tools).map(([tool, r]) => [tool, rule(r, `${at}.rateLimit.tools.${tool}`)!])),
        }
      : undefined,
  };
}

type RawToolLimits = { timeout?: { idle?: Duration; max?: Duration }; retry?: { attempts?: number; backoff?: Duration; maxBackoff?: Duration }; concurrency?: number };

function resolveTimeout(at: string, t: { idle: Duration; max: Duration }): ServerConfig['timeout'] {
  const idleMs = toMs(t.idle, `${at}.timeout.idle`);
  const maxMs = toMs(t.max, `${at}.timeout.max`);
  if (idleMs <= 0 || maxMs <= 0) throw new ConfigError(`config keys ${at}.timeout.idle and ${at}.timeout.max must be longer than 0`);
  return { idleMs, maxMs };
}

/** `servers.<name>.tools.<tool>`: what it leaves out is the server's (`timeout`, `retry`). */
function resolveTool(at: string, tool: string, t: RawToolLimits, timeout: ServerConfig['timeout'], retry: RetryConfig): ToolLimits {
  if (!isToolName(tool)) throw new ConfigError(`config key ${at.slice(0, -tool.length - 1)}: ${JSON.stringify(tool)} is not a valid MCP tool name (A-Z a-z 0-9 _ - ., 1 to 64 characters)`);
  const idle = t.timeout?.idle;
  const max = t.timeout?.max;
  return {
    timeout: idle === undefined && max === undefined ? timeout : resolveTimeout(at, { idle: idle ?? timeout.idleMs, max: max ?? timeout.maxMs }),
    retry: {
      ...retry,
      attempts: t.retry?.attempts ?? retry.attempts,
      backoffMs: t.retry?.backoff === undefined ? retry.backoffMs : toMs(t.retry.backoff, `${at}.retry.backoff`),
      maxBackoffMs: t.retry?.maxBackoff === undefined ? retry.maxBackoffMs : toMs(t.retry.maxBackoff, `${at}.retry.maxBackoff`),
    },
    concurrency: t.concurrency,
  };
}

const KIND_NAMES: Record<UpstreamConfig['kind'], string> = { http: 'url', stdio: 'command', sse: 'transport: sse' };

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
