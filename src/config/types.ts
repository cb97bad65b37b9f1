/** The resolved configuration the gateway runs on: durations in ms, secrets read, kinds tagged. */
export interface GatewayConfig {
  readonly listen: {
    readonly host: string;
    readonly port: number;
    readonly bodyLimit: number;
    readonly allowedOrigins: readonly string[];
    /** Fastify's trustProxy: every hop (true), or the proxies' addresses, CIDRs or `loopback`-style names. */
    readonly trustProxy: boolean | readonly string[];
    /** A request head (TLS handshake included) must arrive within this, on every listener. */
    readonly headersTimeoutMs: number;
    /** A whole request, head and body, must arrive within this; an answer being streamed is not bound by it. */
    readonly requestTimeoutMs: number;
    /** A kept-alive connection with no request in progress is closed after this. */
    readonly keepAliveTimeoutMs: number;
    /** HTTPS listener (files read at load); undefined → plain HTTP. */
    readonly tls: ListenTlsConfig | undefined;
  };
  readonly metrics: {
    readonly host: string;
    readonly port: number;
    readonly enabled: boolean;
    /** Per-tool call metrics (tool names come from callers: opt-in, capped at toolLabelLimit pairs). */
    readonly toolLabels: boolean;
    readonly toolLabelLimit: number;
  };
  readonly redis: RedisConfig | undefined;
  readonly events: {
    readonly ttlMs: number;
    readonly maxLength: number;
    readonly keepAliveMs: number;
    readonly retryMs: number;
    readonly maxBuffer: number;
    readonly detachedGraceMs: number;
    readonly endedTtlMs: number;
    readonly replicaAcks: number;
    readonly replicaAckTimeoutMs: number;
  };
  readonly session: {
    /** 32+ bytes shared by every replica; undefined → a random key per process (one replica). */
    readonly secret: string | undefined;
    readonly maxLifetimeMs: number;
  };
  readonly auth: AuthConfig;
  readonly audit: AuditConfig;
  /** Result cache limits (each server turns caching on with `servers.<name>.cache`). */
  readonly cache: { readonly maxEntryBytes: number; readonly maxEntries: number; readonly maxBytes: number };
  readonly log: { readonly level: string };
  readonly shutdown: { readonly graceMs: number };
  /** stateless: how the gateway bridges 2026-07-28 clients and session-era upstreams, and back. */
  readonly translation: TranslationConfig;
  readonly servers: Readonly<Record<string, ServerConfig>>;
  /** traces: OpenTelemetry, from `telemetry` and the OTEL_* environment; undefined → off (src/config/telemetry.ts). */
  readonly telemetry?: TelemetryConfig | undefined;
}

/** OTEL_TRACES_SAMPLER's values. */
export type SamplerName = 'always_on' | 'always_off' | 'traceidratio' | 'parentbased_always_on' | 'parentbased_always_off' | 'parentbased_traceidratio';

export interface TelemetryConfig {
  readonly exporter: 'otlp' | 'console';
  /** Where OTLP spans go: the traces endpoint itself (`…/v1/traces`). */
  readonly url: string;
  readonly protocol: 'http/protobuf' | 'http/json';
  /** Sent with every export (a collector's API key): secrets. */
  readonly headers: Readonly<Record<string, string>>;
  readonly serviceName: string;
  readonly resourceAttributes: Readonly<Record<string, string>>;
  readonly sampler: SamplerName;
  /** The ratio of the `traceidratio` samplers, 0…1. */
  readonly samplerArg: number;
  /** Spans are exported in batches this often (0: each as it ends). */
  readonly exportDelayMs: number;
  /** Spans waiting for export past this are dropped (a collector that is down costs no memory). */
  readonly maxQueueSize: number;
}

export interface TranslationConfig {
  /** Upstream sessions held per gateway replica for 2026-07-28 clients of session-era upstreams. */
  readonly maxSessions: number;
  /** Of those, at most this many per caller (past it the caller's own least recently used idle one is ended). */
  readonly sessionsPerCaller: number;
  /** An upstream session unused this long is ended. */
  readonly sessionIdleMs: number;
  /** How long a call waiting for the client's input (input_required ↔ server→client requests) is held. */
  readonly inputTimeoutMs: number;
  /** How long an `era: auto` verdict (from server/discover) is trusted before it is asked again. */
  readonly eraProbeTtlMs: number;
}

export interface RedisConfig {
  readonly url: string | undefined;
  readonly sentinels: readonly { readonly host: string; readonly port: number }[] | undefined;
  readonly name: string | undefined;
  readonly cluster: readonly { readonly host: string; readonly port: number }[] | undefined;
  readonly password: string | undefined;
  readonly db: number | undefined;
  readonly keyPrefix: string;
}

export interface ServerConfig {
  readonly name: string;
  readonly upstreams: readonly UpstreamConfig[];
  readonly maxFails: number;
  readonly failTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly probe: { readonly intervalMs: number; readonly timeoutMs: number; readonly path: string | undefined } | undefined;
  readonly maxProcesses: number;
  /** Upstream sessions the gateway itself holds for one caller: stdio children, 2024-11-05 SSE connections. */
  readonly maxSessionsPerCaller: number;
  readonly idleTimeoutMs: number;
  /** stateless: the protocol era the upstream speaks (`auto`: asked with server/discover); stdio is always `session`. */
  readonly era: 'auto' | 'session' | 'stateless';
  /** Who may use this server and which of its tools, resources and prompts (auth on only). */
  readonly policy: ServerPolicy;
  /** compose: the member servers of a virtual server (then `upstreams` is empty); undefined otherwise. */
  readonly compose?: readonly string[];
  /** Result cache for reads and lists; undefined → off. */
  readonly cache: ServerCacheConfig | undefined;
  readonly retry: RetryConfig;
  readonly timeout: { readonly idleMs: number; readonly maxMs: number };
  /** Published tool name → its own limits (`servers.<name>.tools`); a tool not named has the server's. */
  readonly tools: Readonly<Record<string, ToolLimits>>;
  /** undefined → no limits. */
  readonly rateLimit: RateLimitConfig | undefined;
  /** curation: what is published of the upstream's tools, prompts and resources; undefined → all, as they are. */
  readonly curation?: CurationConfig;
}

/** Names that pass: any `include` pattern (none configured: every name), and no `exclude` pattern. */
/** A name or a `*` pattern, compiled (src/config/curation.ts globPattern). */
export interface NamePattern {
  test(name: string): boolean;
}

export interface ItemFilter {
  readonly include: readonly NamePattern[] | undefined;
  readonly exclude: readonly NamePattern[];
}

/** How one upstream tool is published. */
export interface ToolEdit {
  /** The published name; undefined → the upstream's. */
  readonly name: string | undefined;
  readonly title: string | undefined;
  readonly description: string | undefined;
  /** Laid over the upstream's annotations. */
  readonly annotations: Readonly<Record<string, unknown>> | undefined;
  /** Arguments the gateway sets, whatever the caller sends; gone from the published inputSchema. */
  readonly fixed: Readonly<Record<string, unknown>>;
  /** Arguments the gateway sets when the caller does not. */
  readonly defaults: Readonly<Record<string, unknown>>;
}

export interface CurationConfig {
  /** By upstream name; `edits` keyed by upstream name. */
  readonly tools: ItemFilter & { readonly edits: ReadonlyMap<string, ToolEdit> };
  readonly prompts: ItemFilter;
  /** By URI (resources/list) and URI template (resources/templates/list). */
  readonly resources: ItemFilter;
}

/** The longest `servers.<name>.cache.ttl` (the result cache's versions outlive it, src/cache/result-cache.ts). */
export const MAX_CACHE_TTL_MS = 24 * 3_600_000;

export interface ServerCacheConfig {
  /** At most MAX_CACHE_TTL_MS. */
  readonly ttlMs: number;
  /** Every result is the caller's own (keyed by principal), whatever its `cacheScope`. */
  readonly perUser: boolean;
  /** Tool name → whether a call of it empties this server's cache (else: unless annotated readOnlyHint). */
  readonly invalidateOn: Readonly<Record<string, boolean>>;
}

/** One tool's limits, resolved: what its config leaves out is the server's. */
export interface ToolLimits {
  readonly timeout: { readonly idleMs: number; readonly maxMs: number };
  readonly retry: RetryConfig;
  /** Calls of the tool one caller may have running at once, per replica; undefined → no cap. */
  readonly concurrency: number | undefined;
}

export interface RetryConfig {
  /** Tries in all, the first included; 1 → no retries. */
  readonly attempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  /** Retries allowed as a share of requests, per upstream replica. */
  readonly budget: number;
  /** Retries allowed per second regardless of traffic. */
  readonly minPerSecond: number;
}

/** `requests` per `periodMs`. */
export interface RateRule {
  readonly requests: number;
  readonly periodMs: number;
}

export interface RateLimitConfig {
  /** Each caller on this server. */
  readonly principal: RateRule | undefined;
  /** All callers of this server together. */
  readonly server: RateRule | undefined;
  /** Tool name → each caller's calls of that tool. */
  readonly tools: Readonly<Record<string, RateRule>>;
}

export type UpstreamConfig = HttpUpstreamConfig | StdioUpstreamConfig | SseUpstreamConfig;

/** legacy: a 2024-11-05 HTTP+SSE replica (`transport: sse`): the same keys as an HTTP one. */
export interface SseUpstreamConfig extends Omit<HttpUpstreamConfig, 'kind'> {
  readonly kind: 'sse';
}

export interface HttpUpstreamConfig {
  readonly kind: 'http';
  /** Public name: `name` as configured, else the URL without secrets (see replicaNames in load.ts). */
  readonly name: string;
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Cap on request connections to the replica; undefined → as many as requests need. */
  readonly connections: number | undefined;
  /** What the gateway presents to this replica instead of the caller's credentials. */
  readonly credentials?: UpstreamCredentialsConfig;
  /** Client certificate and CA for an https:// replica (PEM, read at load). */
  readonly tls?: UpstreamTlsConfig;
}

export interface StdioUpstreamConfig {
  readonly kind: 'stdio';
  /** Public name: `name` as configured, else `stdio:<index>`. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string | undefined;
}

export interface ListenTlsConfig {
  readonly cert: string;
  readonly key: string;
  /** CA bundle that signs client certificates; set → clients are asked for one. */
  readonly clientCa: string | undefined;
  readonly requireClientCert: boolean;
}

export type JwsAlgorithm = 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA' | 'Ed25519';

/** What a caller must hold: every scope, and every claim matching one of its values. */
export interface AccessRule {
  readonly scopes: readonly string[];
  readonly claims: Readonly<Record<string, readonly string[]>>;
}

export interface IssuerConfig {
  readonly issuer: string;
  readonly jwksUri: string | undefined;
  /** Public keys from `keysFile`, as a JWK set (PEM keys converted at load). */
  readonly keys: { readonly keys: readonly Readonly<Record<string, unknown>>[] } | undefined;
  readonly algorithms: readonly JwsAlgorithm[];
}

export interface AuthConfig {
  readonly mode: 'none' | 'jwt' | 'mtls';
  readonly issuers: readonly IssuerConfig[];
  readonly audience: readonly string[];
  readonly clockToleranceSec: number;
  readonly jwksCacheMaxAgeMs: number;
  readonly jwksCooldownMs: number;
  /** Required of every caller on every server. */
  readonly rule: AccessRule;
  /** External base URL (scheme, host, optional path prefix), no trailing slash. */
  readonly publicUrl: string | undefined;
  readonly pathPrefix: string;
  readonly authorizationServers: readonly string[];
  readonly clientCerts: {
    readonly subject: 'cn' | 'dn' | 'fingerprint';
    /** Subject value → principal; empty → every verified certificate is its own principal. */
    readonly principals: Readonly<Record<string, { readonly name: string; readonly scopes: readonly string[]; readonly claims: Readonly<Record<string, readonly string[]>> }>>;
  };
}

export interface ItemRules {
  /** Exact names first, then `*` patterns in the order written. */
  readonly exact: ReadonlyMap<string, AccessRule>;
  readonly patterns: readonly { readonly pattern: NamePattern; readonly rule: AccessRule }[];
}

export interface ServerPolicy {
  /** Required to use the server at all (global `auth` rule included). */
  readonly rule: AccessRule;
  /** Accepted token audiences for this server. */
  readonly audience: readonly string[];
  readonly tools: ItemRules;
  readonly resources: ItemRules;
  readonly prompts: ItemRules;
  /** Items no rule names: `allow` (visible to every admitted caller) or `deny` (hidden). */
  readonly unlisted: 'allow' | 'deny';
  /** True when any item rule exists or unlisted is deny: lists must be filtered. */
  readonly filtersItems: boolean;
}

export interface UpstreamCredentialsConfig {
  /** Lower-case header name, `authorization` by default. */
  readonly header: string;
  /** A fixed value (read from `valueFile` or `valueEnv` at load), prefix included. */
  readonly value: string | undefined;
  readonly prefix: string;
  readonly clientCredentials:
    | {
        readonly tokenUrl: string;
        readonly clientId: string;
        readonly clientSecret: string;
        readonly scope: string | undefined;
        readonly resource: string | undefined;
        readonly audience: string | undefined;
      }
    | undefined;
  /** auth: RFC 8693 — the caller's validated token exchanged for one for this upstream (src/upstream/token-exchange.ts). */
  readonly tokenExchange?: TokenExchangeConfig;
}

export interface TokenExchangeConfig {
  readonly tokenUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** How the gateway authenticates itself at the token endpoint (RFC 6749 §2.3.1). */
  readonly clientAuth: 'client_secret_basic' | 'client_secret_post';
  readonly scope: string | undefined;
  /** RFC 8707 resource indicator; the upstream's URL when neither it nor `audience` is set. */
  readonly resource: string | undefined;
  readonly audience: string | undefined;
  /** Time limit of one exchange, the answer's body included. */
  readonly timeoutMs: number;
  /** Most exchanged tokens held per replica (one per caller token); the least recently used goes first. */
  readonly cacheSize: number;
}

export interface UpstreamTlsConfig {
  readonly ca: string | undefined;
  readonly cert: string | undefined;
  readonly key: string | undefined;
  readonly serverName: string | undefined;
}

export interface AuditConfig {
  readonly enabled: boolean;
  /** `stdout` or a file path (appended, created with its directory). */
  readonly destination: string;
  readonly redactKeys: readonly string[];
  readonly maxParamsBytes: number;
}
