/** The resolved configuration the gateway runs on: durations in ms, secrets read, kinds tagged. */
export interface GatewayConfig {
  readonly listen: {
    readonly host: string;
    readonly port: number;
    readonly bodyLimit: number;
    readonly allowedOrigins: readonly string[];
    readonly trustProxy: boolean;
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
    readonly replicaAcks: number;
    readonly replicaAckTimeoutMs: number;
  };
  readonly session: {
    /** 32+ bytes shared by every replica; undefined → a random key per process (one replica). */
    readonly secret: string | undefined;
    readonly maxLifetimeMs: number;
  };
  readonly auth: {
    readonly mode: 'none' | 'jwt';
    readonly issuer: string | undefined;
    readonly audience: string | undefined;
    readonly jwksUri: string | undefined;
  };
  readonly log: { readonly level: string };
  readonly shutdown: { readonly graceMs: number };
  readonly servers: Readonly<Record<string, ServerConfig>>;
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
  readonly idleTimeoutMs: number;
}

export type UpstreamConfig = HttpUpstreamConfig | StdioUpstreamConfig;

export interface HttpUpstreamConfig {
  readonly kind: 'http';
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly connections: number;
}

export interface StdioUpstreamConfig {
  readonly kind: 'stdio';
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string | undefined;
}
