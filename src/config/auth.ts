import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import { globPattern } from './curation.ts';
import { toMs, type Duration } from './duration.ts';
import type {
  AccessRule,
  AuditConfig,
  AuthConfig,
  IssuerConfig,
  ItemRules,
  JwsAlgorithm,
  ListenTlsConfig,
  NamePattern,
  ServerConfig,
  ServerPolicy,
  TokenExchangeConfig,
  UpstreamCredentialsConfig,
  UpstreamTlsConfig,
} from './types.ts';

/**
 * Resolves the security parts of the configuration: issuers and their keys, access rules,
 * upstream credentials and TLS material. Files and environment references are read here, once,
 * so a missing secret stops the gateway at start with the key's path.
 */

type Claims = Record<string, string | string[]>;
interface RawRule {
  scopes?: string[];
  claims?: Claims;
}

export interface RawAuth extends RawRule {
  mode: 'none' | 'jwt' | 'mtls';
  issuer?: string;
  audience?: string | string[];
  jwksUri?: string;
  issuers?: { issuer: string; jwksUri?: string; keysFile?: string; algorithms?: JwsAlgorithm[] }[];
  algorithms: JwsAlgorithm[];
  clockTolerance: Duration;
  jwksCacheMaxAge: Duration;
  jwksCooldown: Duration;
  publicUrl?: string;
  pathPrefix?: string;
  authorizationServers?: string[];
  clientCerts: { subject: 'cn' | 'dn' | 'fingerprint'; principals?: Record<string, { name?: string; scopes?: string[]; claims?: Claims }> };
}

export interface RawServerAuth extends RawRule {
  audience?: string | string[];
  tools?: Record<string, RawRule>;
  resources?: Record<string, RawRule>;
  prompts?: Record<string, RawRule>;
  unlisted: 'allow' | 'deny';
}

const MAX_CLOCK_TOLERANCE_MS = 5 * 60_000;

export function readConfigFile(path: string, key: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`config key ${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function readEnvRef(name: string, key: string, env: NodeJS.ProcessEnv): string {
  const value = env[name];
  if (value === undefined || value === '') throw new ConfigError(`config key ${key}: environment variable ${name} is not set`);
  return value;
}

const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

export function resolveRule(raw: RawRule | undefined): AccessRule {
  const claims: Record<string, readonly string[]> = {};
  for (const [k, v] of Object.entries(raw?.claims ?? {})) claims[k] = list(v);
  return { scopes: [...new Set(raw?.scopes ?? [])], claims };
}

function mergeRules(a: AccessRule, b: AccessRule): AccessRule {
  const claims: Record<string, readonly string[]> = { ...a.claims };
  // Both rules must hold: a claim named twice must match both lists, i.e. their intersection.
  for (const [k, v] of Object.entries(b.claims)) claims[k] = claims[k] ? claims[k].filter((x) => v.includes(x)) : v;
  return { scopes: [...new Set([...a.scopes, ...b.scopes])], claims };
}

export function resolveAuth(r: RawAuth): AuthConfig {
  const issuers: IssuerConfig[] = [];
  if (r.mode === 'jwt') {
    if (r.issuer !== undefined || r.jwksUri !== undefined || !r.issuers?.length) {
      if (!r.issuer) throw new ConfigError('config key auth.issuer is required when auth.mode is jwt (or list auth.issuers)');
      if (!r.jwksUri) throw new ConfigError('config key auth.jwksUri is required with auth.issuer (or list the issuer under auth.issuers with jwksUri or keysFile)');
      issuers.push({ issuer: r.issuer, jwksUri: r.jwksUri, keys: undefined, algorithms: r.algorithms });
    }
    for (const [i, x] of (r.issuers ?? []).entries()) {
      const at = `auth.issuers[${i}]`;
      if (!x.jwksUri && !x.keysFile) throw new ConfigError(`config key ${at} needs jwksUri or keysFile`);
      if (issuers.some((o) => o.issuer === x.issuer)) throw new ConfigError(`config key ${at}.issuer: ${x.issuer} is listed twice`);
      issuers.push({
        issuer: x.issuer,
        jwksUri: x.jwksUri,
        keys: x.keysFile ? readKeys(x.keysFile, `${at}.keysFile`) : undefined,
        algorithms: x.algorithms ?? r.algorithms,
      });
    }
  }
  const clockToleranceMs = toMs(r.clockTolerance, 'auth.clockTolerance');
  if (clockToleranceMs > MAX_CLOCK_TOLERANCE_MS) throw new ConfigError('config key auth.clockTolerance must be at most 5m');
  // Own properties only: a subject `__proto__` assigned as `principals[subject] = …` would become the prototype.
  const principals = Object.fromEntries(
    Object.entries(r.clientCerts.principals ?? {}).map(([subject, p]) => {
      const rule = resolveRule(p);
      return [subject, { name: p.name ?? subject, scopes: [...rule.scopes], claims: rule.claims }];
    }),
  );
  return {
    mode: r.mode,
    issuers,
    audience: list(r.audience),
    clockToleranceSec: Math.ceil(clockToleranceMs / 1000),
    jwksCacheMaxAgeMs: toMs(r.jwksCacheMaxAge, 'auth.jwksCacheMaxAge'),
    jwksCooldownMs: toMs(r.jwksCooldown, 'auth.jwksCooldown'),
    rule: resolveRule(r),
    publicUrl: r.publicUrl?.replace(/\/+$/, ''),
    pathPrefix: r.pathPrefix ?? '',
    authorizationServers: r.authorizationServers ?? issuers.map((i) => i.issuer),
    clientCerts: { subject: r.clientCerts.subject, principals },
  };
}

/** A JWK set file (`{"keys": [...]}`), or one or more PEM public keys / certificates. */
function readKeys(path: string, key: string): IssuerConfig['keys'] {
  const text = readConfigFile(path, key).trim();
  if (text.startsWith('{')) {
    let jwks: unknown;
    try {
      jwks = JSON.parse(text);
    } catch {
      throw new ConfigError(`config key ${key}: ${path} is not valid JSON`);
    }
    const keys = (jwks as { keys?: unknown }).keys;
    if (!Array.isArray(keys) || keys.length === 0) throw new ConfigError(`config key ${key}: ${path} is not a JWK set ({"keys": [...]})`);
    for (const k of keys as Record<string, unknown>[]) {
      if (k.kty === 'oct' || 'd' in k) throw new ConfigError(`config key ${key}: ${path} must hold public keys only (no "oct" or private keys)`);
    }
    return { keys: keys as Record<string, unknown>[] };
  }
  const blocks = text.match(/-----BEGIN (PUBLIC KEY|CERTIFICATE|RSA PUBLIC KEY)-----[\s\S]+?-----END \1-----/g);
  if (!blocks) throw new ConfigError(`config key ${key}: ${path} holds neither a JWK set nor PEM public keys`);
  return {
    keys: blocks.map((pem, i) => {
      try {
        return { ...createPublicKey(pem).export({ format: 'jwk' }), kid: `${key}#${i}` } as Record<string, unknown>;
      } catch (err) {
        throw new ConfigError(`config key ${key}: PEM block ${i} of ${path}: ${(err as Error).message}`);
      }
    }),
  };
}

function itemRules(raw: Record<string, RawRule> | undefined): ItemRules {
  const exact = new Map<string, AccessRule>();
  const patterns: { pattern: NamePattern; rule: AccessRule }[] = [];
  for (const [name, rule] of Object.entries(raw ?? {})) {
    if (name.includes('*')) {
      patterns.push({ pattern: globPattern(name), rule: resolveRule(rule) });
    } else {
      exact.set(name, resolveRule(rule));
    }
  }
  return { exact, patterns };
}

export function resolvePolicy(at: string, raw: RawServerAuth | undefined, auth: AuthConfig, serverName: string): ServerPolicy {
  if (raw && auth.mode === 'none') throw new ConfigError(`config key ${at}.auth needs auth.mode jwt or mtls (there is no caller to check)`);
  let audience = list(raw?.audience);
  if (audience.length === 0) audience = [...auth.audience];
  if (auth.publicUrl) audience.push(`${auth.publicUrl}/mcp/${serverName}`);
  if (auth.mode === 'jwt' && audience.length === 0) {
    throw new ConfigError(`config key auth.audience is required when auth.mode is jwt (or set auth.publicUrl, or ${at}.auth.audience)`);
  }
  const tools = itemRules(raw?.tools);
  const resources = itemRules(raw?.resources);
  const prompts = itemRules(raw?.prompts);
  const unlisted = raw?.unlisted ?? 'allow';
  const some = (r: ItemRules) => r.exact.size > 0 || r.patterns.length > 0;
  return {
    rule: mergeRules(auth.rule, resolveRule(raw)),
    audience: [...new Set(audience)],
    tools,
    resources,
    prompts,
    unlisted,
    filtersItems: auth.mode !== 'none' && (unlisted === 'deny' || some(tools) || some(resources) || some(prompts)),
  };
}

export interface RawCredentials {
  header: string;
  prefix?: string;
  valueFile?: string;
  valueEnv?: string;
  clientCredentials?: {
    tokenUrl: string;
    clientId: string;
    clientSecret?: string;
    clientSecretFile?: string;
    clientSecretEnv?: string;
    scope?: string;
    resource?: string;
    audience?: string;
  };
  tokenExchange?: {
    tokenUrl: string;
    clientId: string;
    clientSecret?: string;
    clientSecretFile?: string;
    clientSecretEnv?: string;
    clientAuth: TokenExchangeConfig['clientAuth'];
    scope?: string;
    resource?: string;
    audience?: string;
    timeout: Duration;
    cacheSize: number;
  };
}

/** The gateway's client secret at a token endpoint: exactly one of the value, a file, an environment variable. */
function clientSecret(at: string, raw: { clientSecret?: string; clientSecretFile?: string; clientSecretEnv?: string }, env: NodeJS.ProcessEnv): string {
  const secrets = (['clientSecret', 'clientSecretFile', 'clientSecretEnv'] as const).filter((k) => raw[k] !== undefined);
  if (secrets.length !== 1) throw new ConfigError(`config key ${at} needs exactly one of clientSecret, clientSecretFile or clientSecretEnv`);
  const secret = raw.clientSecret ?? (raw.clientSecretFile ? readConfigFile(raw.clientSecretFile, `${at}.clientSecretFile`) : readEnvRef(raw.clientSecretEnv!, `${at}.clientSecretEnv`, env));
  return secret.trim();
}

/** Whether some upstream of the server gets a token for each caller (credentials.tokenExchange): a request for no caller has none to exchange. */
export function exchangesCallerTokens(server: ServerConfig | undefined): boolean {
  return server?.upstreams.some((u) => u.kind === 'http' && u.credentials?.tokenExchange) === true;
}

export function resolveCredentials(at: string, raw: RawCredentials, env: NodeJS.ProcessEnv, upstreamUrl: string, authMode: AuthConfig['mode']): UpstreamCredentialsConfig {
  const kinds = (['valueFile', 'valueEnv', 'clientCredentials', 'tokenExchange'] as const).filter((k) => raw[k] !== undefined);
  if (kinds.length !== 1) throw new ConfigError(`config key ${at} needs exactly one of valueFile, valueEnv, clientCredentials or tokenExchange`);
  const prefix = raw.prefix ?? (raw.clientCredentials || raw.tokenExchange ? 'Bearer ' : '');
  let value: string | undefined;
  if (raw.valueFile) value = readConfigFile(raw.valueFile, `${at}.valueFile`).trim();
  if (raw.valueEnv) value = readEnvRef(raw.valueEnv, `${at}.valueEnv`, env).trim();
  if (value !== undefined && (value === '' || /[\r\n]/.test(value))) throw new ConfigError(`config key ${at}: the value must be one non-empty line`);
  let clientCredentials: UpstreamCredentialsConfig['clientCredentials'];
  const cc = raw.clientCredentials;
  if (cc) {
    const secret = clientSecret(`${at}.clientCredentials`, cc, env);
    // Checked here so that a failing token request can always name it (src/config/redact.ts publicUrl).
    if (!URL.canParse(cc.tokenUrl)) throw new ConfigError(`config key ${at}.clientCredentials.tokenUrl is not a valid URL`);
    clientCredentials = { tokenUrl: cc.tokenUrl, clientId: cc.clientId, clientSecret: secret, scope: cc.scope, resource: cc.resource, audience: cc.audience };
  }
  const tx = raw.tokenExchange;
  if (!tx) return { header: raw.header.toLowerCase(), value: value === undefined ? undefined : prefix + value, prefix, clientCredentials };
  // Only a bearer token the gateway validated is exchanged: a certificate caller has none to give.
  if (authMode !== 'jwt') throw new ConfigError(`config key ${at}.tokenExchange needs auth.mode jwt: it exchanges the caller's validated access token, and with auth.mode ${authMode} there is none`);
  const secret = clientSecret(`${at}.tokenExchange`, tx, env);
  if (!URL.canParse(tx.tokenUrl)) throw new ConfigError(`config key ${at}.tokenExchange.tokenUrl is not a valid URL`);
  if (tx.resource !== undefined && (!URL.canParse(tx.resource) || tx.resource.includes('#'))) throw new ConfigError(`config key ${at}.tokenExchange.resource must be an absolute URI without a fragment (RFC 8707)`);
  const timeoutMs = toMs(tx.timeout, `${at}.tokenExchange.timeout`);
  if (timeoutMs < 1) throw new ConfigError(`config key ${at}.tokenExchange.timeout must be more than 0`);
  const tokenExchange: TokenExchangeConfig = {
    tokenUrl: tx.tokenUrl,
    clientId: tx.clientId,
    clientSecret: secret,
    clientAuth: tx.clientAuth,
    scope: tx.scope,
    // RFC 8707: the token is for this upstream unless the operator names its audience otherwise.
    resource: tx.resource ?? (tx.audience === undefined ? upstreamUrl : undefined),
    audience: tx.audience,
    timeoutMs,
    cacheSize: tx.cacheSize,
  };
  return { header: raw.header.toLowerCase(), value: undefined, prefix, clientCredentials: undefined, tokenExchange };
}

export function resolveUpstreamTls(at: string, raw: { caFile?: string; certFile?: string; keyFile?: string; serverName?: string }): UpstreamTlsConfig {
  if ((raw.certFile === undefined) !== (raw.keyFile === undefined)) throw new ConfigError(`config key ${at}: certFile and keyFile go together`);
  return {
    ca: raw.caFile ? readConfigFile(raw.caFile, `${at}.caFile`) : undefined,
    cert: raw.certFile ? readConfigFile(raw.certFile, `${at}.certFile`) : undefined,
    key: raw.keyFile ? readConfigFile(raw.keyFile, `${at}.keyFile`) : undefined,
    serverName: raw.serverName,
  };
}

export function resolveListenTls(raw: { certFile: string; keyFile: string; clientCaFile?: string; requireClientCert: boolean } | undefined, mode: AuthConfig['mode']): ListenTlsConfig | undefined {
  if (!raw) {
    if (mode === 'mtls') throw new ConfigError('config key listen.tls is required when auth.mode is mtls (client certificates need HTTPS)');
    return undefined;
  }
  if (raw.requireClientCert && !raw.clientCaFile) throw new ConfigError('config key listen.tls.clientCaFile is required with listen.tls.requireClientCert');
  if (mode === 'mtls' && !raw.clientCaFile) throw new ConfigError('config key listen.tls.clientCaFile is required when auth.mode is mtls');
  return {
    cert: readConfigFile(raw.certFile, 'listen.tls.certFile'),
    key: readConfigFile(raw.keyFile, 'listen.tls.keyFile'),
    clientCa: raw.clientCaFile ? readConfigFile(raw.clientCaFile, 'listen.tls.clientCaFile') : undefined,
    requireClientCert: raw.requireClientCert,
  };
}

export function resolveAudit(raw: AuditConfig): AuditConfig {
  return { enabled: raw.enabled, destination: raw.destination, redactKeys: raw.redactKeys, maxParamsBytes: raw.maxParamsBytes };
}
