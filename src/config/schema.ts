import { DURATION_SCHEMA } from './duration.ts';

/**
 * The one configuration schema. Every object rejects unknown keys (the validator reports the
 * key's path); defaults live here and nowhere else. `types.ts` mirrors it for TypeScript.
 */
const duration = (dflt: string) => ({ ...DURATION_SCHEMA, default: dflt });

const hostPort = (host: string, port: number) => ({
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    host: { type: 'string', minLength: 1, default: host },
    port: { type: 'integer', minimum: 0, maximum: 65535, default: port },
  },
});

const hostPortItem = {
  type: 'object',
  additionalProperties: false,
  required: ['host', 'port'],
  properties: { host: { type: 'string', minLength: 1 }, port: { type: 'integer', minimum: 1, maximum: 65535 } },
} as const;

const stringOrList = { anyOf: [{ type: 'string', minLength: 1 }, { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }] } as const;
const scopeList = { type: 'array', items: { type: 'string', pattern: '^[!#-\\[\\]-~]+$' } } as const;
/** Claim name → the value it must have (a list: any of them); an array claim matches when it contains one. */
const claims = { type: 'object', additionalProperties: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }] } } as const;
/** Asymmetric JWS algorithms only: `none` and the HMAC family cannot be configured at all. */
const JWS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
const algorithms = (dflt?: readonly string[]) => ({ type: 'array', minItems: 1, items: { enum: JWS_ALGORITHMS }, ...(dflt ? { default: dflt } : {}) });
/** Tool / resource / prompt name (or `*` glob) → what a caller needs to see and use it. */
const itemRules = {
  type: 'object',
  additionalProperties: { type: 'object', additionalProperties: false, properties: { scopes: scopeList, claims } },
} as const;

/** OTEL_TRACES_SAMPLER's values (the OpenTelemetry SDK configuration spec). */
export const SAMPLERS = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'] as const;

/** A rate limit: `requests` per `per`, as GCRA (a full window's worth may come at once). */
const rateRule = {
  type: 'object',
  additionalProperties: false,
  required: ['requests'],
  properties: { requests: { type: 'integer', minimum: 1 }, per: duration('1m') },
} as const;

/** servers.<name>.tools.<tool>: one tool's own limits; what it leaves out is the server's. */
const toolLimits = {
  type: 'object',
  additionalProperties: false,
  properties: {
    timeout: { type: 'object', additionalProperties: false, properties: { idle: DURATION_SCHEMA, max: DURATION_SCHEMA } },
    retry: {
      type: 'object',
      additionalProperties: false,
      properties: { attempts: { type: 'integer', minimum: 1, maximum: 10 }, backoff: DURATION_SCHEMA, maxBackoff: DURATION_SCHEMA },
    },
    concurrency: { type: 'integer', minimum: 1, maximum: 10_000 },
  },
} as const;

/** curation: names or `*` globs of the items a server publishes (include; default all) and hides (exclude). */
const globList = { type: 'array', items: { type: 'string', minLength: 1, maxLength: 1024 } } as const;
const itemFilter = { type: 'object', additionalProperties: false, properties: { include: globList, exclude: globList } } as const;
/** curation: how one tool is published; a published name keeps to MCP's tool-name characters and 64 characters. */
const toolEdit = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
    title: { type: 'string' },
    description: { type: 'string' },
    annotations: {
      type: 'object',
      additionalProperties: false,
      properties: {
        title: { type: 'string' },
        readOnlyHint: { type: 'boolean' },
        destructiveHint: { type: 'boolean' },
        idempotentHint: { type: 'boolean' },
        openWorldHint: { type: 'boolean' },
      },
    },
    fixed: { type: 'object', default: {} },
    defaults: { type: 'object', default: {} },
  },
} as const;
const curation = {
  type: 'object',
  additionalProperties: false,
  properties: {
    tools: { type: 'object', additionalProperties: false, properties: { ...itemFilter.properties, edit: { type: 'object', additionalProperties: toolEdit, default: {} } } },
    prompts: itemFilter,
    resources: itemFilter,
  },
} as const;

/** The gateway as a client of an OAuth token endpoint: where, who, and its secret (exactly one source; load.ts checks). */
const tokenEndpointClient = {
  tokenUrl: { type: 'string', pattern: '^https?://' },
  clientId: { type: 'string', minLength: 1 },
  clientSecret: { type: 'string', minLength: 1 },
  clientSecretFile: { type: 'string', minLength: 1 },
  clientSecretEnv: { type: 'string', minLength: 1 },
} as const;

/** One replica of a server: Streamable HTTP (`url`) or a stdio child process (`command`). */
const upstream = {
  type: 'object',
  additionalProperties: false,
  properties: {
    // The replica's public name (metrics, logs, session ids); default: its URL without secrets.
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' },
    url: { type: 'string', pattern: '^https?://' },
    // legacy: `sse` reaches a 2024-11-05 HTTP+SSE server (src/upstream/sse.ts).
    transport: { enum: ['streamable-http', 'sse'] },
    headers: { type: 'object', additionalProperties: { type: 'string' } },
    connections: { type: 'integer', minimum: 1 },
    command: { type: 'string', minLength: 1 },
    args: { type: 'array', items: { type: 'string' } },
    env: { type: 'object', additionalProperties: { type: 'string' } },
    cwd: { type: 'string' },
    credentials: {
      type: 'object',
      additionalProperties: false,
      properties: {
        header: { type: 'string', pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', default: 'authorization' },
        prefix: { type: 'string' },
        valueFile: { type: 'string', minLength: 1 },
        valueEnv: { type: 'string', minLength: 1 },
        clientCredentials: {
          type: 'object',
          additionalProperties: false,
          required: ['tokenUrl', 'clientId'],
          properties: {
            ...tokenEndpointClient,
            scope: { type: 'string' },
            resource: { type: 'string' },
            audience: { type: 'string' },
          },
        },
        // auth: RFC 8693 — the caller's validated access token exchanged for one for this upstream.
        tokenExchange: {
          type: 'object',
          additionalProperties: false,
          required: ['tokenUrl', 'clientId'],
          properties: {
            ...tokenEndpointClient,
            clientAuth: { enum: ['client_secret_basic', 'client_secret_post'], default: 'client_secret_basic' },
            scope: { type: 'string' },
            resource: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9+.-]*:' },
            audience: { type: 'string', minLength: 1 },
            timeout: duration('10s'),
            cacheSize: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 10_000 },
          },
        },
      },
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      properties: {
        caFile: { type: 'string', minLength: 1 },
        certFile: { type: 'string', minLength: 1 },
        keyFile: { type: 'string', minLength: 1 },
        serverName: { type: 'string', minLength: 1 },
      },
    },
  },
  // Exactly one kind; load.ts names the keys that do not belong to the chosen kind.
  oneOf: [{ required: ['url'] }, { required: ['command'] }],
} as const;

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    listen: {
      ...hostPort('127.0.0.1', 8080),
      properties: {
        ...hostPort('127.0.0.1', 8080).properties,
        bodyLimit: { type: 'integer', minimum: 1024, default: 4 * 1024 * 1024 },
        allowedOrigins: {
          type: 'array',
          items: { type: 'string', minLength: 1 },
          default: ['http://localhost:*', 'http://127.0.0.1:*', 'http://[::1]:*', 'https://localhost:*', 'https://127.0.0.1:*'],
        },
        // true trusts every hop: the left-most X-Forwarded-For entry, which a client writes when its
        // proxy appends. The proxies' addresses (or CIDRs, `loopback`, `uniquelocal`) take the
        // address the last trusted proxy saw.
        trustProxy: { anyOf: [{ type: 'boolean' }, { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 }], default: false },
        // Slow clients: each connection is a file descriptor, held until these bound it.
        headersTimeout: duration('10s'),
        requestTimeout: duration('30s'),
        keepAliveTimeout: duration('65s'),
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['certFile', 'keyFile'],
          properties: {
            certFile: { type: 'string', minLength: 1 },
            keyFile: { type: 'string', minLength: 1 },
            clientCaFile: { type: 'string', minLength: 1 },
            requireClientCert: { type: 'boolean', default: false },
          },
        },
      },
    },
    metrics: {
      ...hostPort('127.0.0.1', 9090),
      properties: {
        ...hostPort('127.0.0.1', 9090).properties,
        enabled: { type: 'boolean', default: true },
        toolLabels: { type: 'boolean', default: false },
        toolLabelLimit: { type: 'integer', minimum: 1, maximum: 10000, default: 100 },
      },
    },
    redis: {
      type: 'object',
      additionalProperties: false,
      properties: {
        url: { type: 'string', pattern: '^rediss?://' },
        sentinels: { type: 'array', minItems: 1, items: hostPortItem },
        name: { type: 'string', minLength: 1 },
        cluster: { type: 'array', minItems: 1, items: hostPortItem },
        password: { type: 'string' },
        db: { type: 'integer', minimum: 0 },
        keyPrefix: { type: 'string', default: 'mcpgw:' },
      },
      // One deployment kind: a URL, Sentinel (sentinels + master name) or Cluster (seed nodes).
      oneOf: [{ required: ['url'] }, { required: ['sentinels', 'name'] }, { required: ['cluster'] }],
    },
    events: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        ttl: duration('10m'),
        maxLength: { type: 'integer', minimum: 10, default: 10_000 },
        keepAlive: duration('15s'),
        retry: duration('1s'),
        maxBuffer: { type: 'integer', minimum: 1024, default: 1024 * 1024 },
        detachedGrace: duration('30s'),
        endedTtl: duration('1m'),
        replicaAcks: { type: 'integer', minimum: 0, default: 0 },
        replicaAckTimeout: duration('500ms'),
      },
    },
    session: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        secret: { type: 'string', minLength: 32 },
        secretFile: { type: 'string', minLength: 1 },
        maxLifetime: duration('24h'),
      },
    },
    auth: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        mode: { enum: ['none', 'jwt', 'mtls'], default: 'none' },
        issuer: { type: 'string' },
        audience: stringOrList,
        jwksUri: { type: 'string', pattern: '^https?://' },
        issuers: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['issuer'],
            properties: {
              issuer: { type: 'string', minLength: 1 },
              jwksUri: { type: 'string', pattern: '^https?://' },
              keysFile: { type: 'string', minLength: 1 },
              algorithms: algorithms(),
            },
          },
        },
        algorithms: algorithms(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']),
        clockTolerance: duration('30s'),
        jwksCacheMaxAge: duration('10m'),
        jwksCooldown: duration('30s'),
        scopes: scopeList,
        claims,
        publicUrl: { type: 'string', pattern: '^https?://[^/?#]+(/[^?#]*)?$' },
        // It goes into response headers (WWW-Authenticate): path characters only (RFC 3986 pchar).
        pathPrefix: { type: 'string', pattern: "^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$" },
        authorizationServers: { type: 'array', items: { type: 'string', pattern: '^https?://' } },
        clientCerts: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            subject: { enum: ['cn', 'dn', 'fingerprint'], default: 'cn' },
            principals: {
              type: 'object',
              additionalProperties: {
                type: 'object',
                additionalProperties: false,
                properties: { name: { type: 'string', minLength: 1 }, scopes: scopeList, claims },
              },
            },
          },
        },
      },
    },
    audit: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        destination: { type: 'string', minLength: 1, default: 'stdout' },
        redactKeys: { type: 'array', items: { type: 'string', minLength: 1 }, default: ['password', 'token', 'secret', 'api_key'] },
        maxParamsBytes: { type: 'integer', minimum: 0, default: 8192 },
      },
    },
    cache: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxEntryBytes: { type: 'integer', minimum: 1024, default: 1024 * 1024 },
        maxEntries: { type: 'integer', minimum: 100, default: 10_000 },
        maxBytes: { type: 'integer', minimum: 1024 * 1024, default: 64 * 1024 * 1024 },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
      },
    },
    shutdown: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { grace: duration('25s') },
    },
    // stateless: translation between protocol eras (src/translate/).
    translation: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxSessions: { type: 'integer', minimum: 1, default: 1000 },
        sessionsPerCaller: { type: 'integer', minimum: 1, default: 8 },
        sessionIdle: duration('5m'),
        inputTimeout: duration('5m'),
        eraProbeTtl: duration('5m'),
      },
    },
    // traces: OpenTelemetry (src/ops/telemetry.ts); the OTEL_* environment overlays it (src/config/telemetry.ts).
    telemetry: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        exporter: { enum: ['otlp', 'console', 'none'] },
        endpoint: { type: 'string', pattern: '^https?://' },
        tracesEndpoint: { type: 'string', pattern: '^https?://' },
        protocol: { enum: ['http/protobuf', 'http/json'], default: 'http/protobuf' },
        headers: { type: 'object', additionalProperties: { type: 'string' }, default: {} },
        serviceName: { type: 'string', minLength: 1, default: 'mcp-gateway' },
        resourceAttributes: { type: 'object', additionalProperties: { type: 'string' }, default: {} },
        sampler: { enum: SAMPLERS, default: 'parentbased_always_on' },
        samplerArg: { type: 'number', minimum: 0, maximum: 1, default: 1 },
        exportDelay: duration('5s'),
        maxQueueSize: { type: 'integer', minimum: 1, default: 2048 },
      },
    },
    servers: {
      type: 'object',
      default: {},
      propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        // compose: a server is either a pool of upstreams or a virtual server over other servers.
        oneOf: [{ required: ['upstreams'] }, { required: ['compose'] }],
        properties: {
          upstreams: {
            type: 'array',
            minItems: 1,
            items: upstream,
          },
          compose: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' } },
          maxFails: { type: 'integer', minimum: 0, default: 3 },
          failTimeout: duration('30s'),
          requestTimeout: duration('5m'),
          probe: {
            type: 'object',
            additionalProperties: false,
            properties: {
              interval: duration('10s'),
              timeout: duration('2s'),
              path: { type: 'string', pattern: '^/' },
            },
          },
          maxProcesses: { type: 'integer', minimum: 1, default: 32 },
          // Upstream sessions the gateway holds for one caller (stdio children, 2024-11-05 SSE connections).
          maxSessionsPerCaller: { type: 'integer', minimum: 1, default: 8 },
          // stateless: which protocol era the upstream speaks; auto asks it (server/discover).
          era: { enum: ['auto', 'session', 'stateless'], default: 'auto' },
          idleTimeout: duration('10m'),
          cache: {
            type: 'object',
            additionalProperties: false,
            properties: {
              ttl: duration('1m'),
              perUser: { type: 'boolean', default: false },
              invalidateOn: { type: 'object', additionalProperties: { type: 'boolean' }, default: {} },
            },
          },
          retry: {
            type: 'object',
            additionalProperties: false,
            default: {},
            properties: {
              attempts: { type: 'integer', minimum: 1, maximum: 10, default: 3 },
              backoff: duration('100ms'),
              maxBackoff: duration('2s'),
              budget: { type: 'number', minimum: 0, maximum: 1, default: 0.2 },
              minPerSecond: { type: 'number', minimum: 0, default: 5 },
            },
          },
          timeout: {
            type: 'object',
            additionalProperties: false,
            default: {},
            properties: { idle: duration('5m'), max: duration('1h') },
          },
          // Published tool name → its own time limits, retries and per-caller concurrency cap.
          tools: { type: 'object', default: {}, additionalProperties: toolLimits },
          rateLimit: {
            type: 'object',
            additionalProperties: false,
            properties: {
              principal: rateRule,
              server: rateRule,
              tools: { type: 'object', additionalProperties: rateRule, default: {} },
            },
          },
          // curation: what the server publishes of its upstream's tools, prompts and resources (src/curation/).
          curation,
          auth: {
            type: 'object',
            additionalProperties: false,
            properties: {
              scopes: scopeList,
              claims,
              audience: stringOrList,
              tools: itemRules,
              resources: itemRules,
              prompts: itemRules,
              unlisted: { enum: ['allow', 'deny'], default: 'allow' },
            },
          },
        },
      },
    },
  },
} as const;
