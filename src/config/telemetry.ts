import { ConfigError } from '../errors.ts';
import { toMs, type Duration } from './duration.ts';
import { SAMPLERS } from './schema.ts';
import type { SamplerName, TelemetryConfig } from './types.ts';

/** The `telemetry` section as the schema left it (defaults filled in). */
export interface RawTelemetry {
  exporter?: 'otlp' | 'console' | 'none';
  endpoint?: string;
  tracesEndpoint?: string;
  protocol: TelemetryConfig['protocol'];
  headers: Record<string, string>;
  serviceName: string;
  resourceAttributes: Record<string, string>;
  sampler: SamplerName;
  samplerArg: number;
  exportDelay: Duration;
  maxQueueSize: number;
}

/** Where an OTLP/HTTP exporter sends when nothing says otherwise (the OpenTelemetry default). */
const DEFAULT_ENDPOINT = 'http://localhost:4318';

/**
 * Traces are configured the OpenTelemetry way: the `OTEL_*` variables of the SDK configuration
 * spec, over the `telemetry` section (the environment wins, as `MCPGW_*` does). Off unless an
 * exporter or an OTLP endpoint is named; `OTEL_SDK_DISABLED=true` or an exporter `none` turns
 * them off whatever else is set. Undefined means off: the gateway then loads no OpenTelemetry code.
 */
export function resolveTelemetry(raw: RawTelemetry, env: NodeJS.ProcessEnv): TelemetryConfig | undefined {
  if (otel(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return undefined;
  const tracesEndpoint = url(otel(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'), 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? raw.tracesEndpoint;
  const endpoint = url(otel(env, 'OTEL_EXPORTER_OTLP_ENDPOINT'), 'OTEL_EXPORTER_OTLP_ENDPOINT') ?? raw.endpoint;
  const exporter = exporterOf(env) ?? raw.exporter ?? (tracesEndpoint || endpoint ? 'otlp' : 'none');
  if (exporter === 'none') return undefined;
  const protocol = protocolOf(env) ?? raw.protocol;
  const headers = { ...raw.headers, ...pairs(env, 'OTEL_EXPORTER_OTLP_HEADERS'), ...pairs(env, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS') };
  const sampler = otel(env, 'OTEL_TRACES_SAMPLER')?.toLowerCase() ?? raw.sampler;
  if (!(SAMPLERS as readonly string[]).includes(sampler)) throw new ConfigError(`environment variable OTEL_TRACES_SAMPLER: "${sampler}" is not one of ${SAMPLERS.join(', ')}`);
  return {
    exporter,
    // The signal path is appended to the base endpoint only; a traces endpoint is used as it is.
    url: tracesEndpoint ?? `${(endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '')}/v1/traces`,
    protocol,
    headers,
    serviceName: otel(env, 'OTEL_SERVICE_NAME') ?? raw.serviceName,
    resourceAttributes: { ...raw.resourceAttributes, ...pairs(env, 'OTEL_RESOURCE_ATTRIBUTES') },
    sampler: sampler as SamplerName,
    samplerArg: number(env, 'OTEL_TRACES_SAMPLER_ARG', 0, 1) ?? raw.samplerArg,
    exportDelayMs: number(env, 'OTEL_BSP_SCHEDULE_DELAY', 0, Number.MAX_SAFE_INTEGER) ?? toMs(raw.exportDelay, 'telemetry.exportDelay'),
    maxQueueSize: number(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 1, Number.MAX_SAFE_INTEGER) ?? raw.maxQueueSize,
  };
}

/** An OTEL_* variable; empty counts as unset (the spec's rule). */
function otel(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

function exporterOf(env: NodeJS.ProcessEnv): RawTelemetry['exporter'] {
  const v = otel(env, 'OTEL_TRACES_EXPORTER')?.toLowerCase();
  if (v === undefined || v === 'otlp' || v === 'console' || v === 'none') return v;
  throw new ConfigError(`environment variable OTEL_TRACES_EXPORTER: "${v}" is not supported (otlp, console or none)`);
}

function protocolOf(env: NodeJS.ProcessEnv): TelemetryConfig['protocol'] | undefined {
  const name = otel(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const v = otel(env, name);
  if (v === undefined || v === 'http/protobuf' || v === 'http/json') return v;
  throw new ConfigError(`environment variable ${name}: "${v}" is not supported (http/protobuf or http/json)`);
}

function url(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (!/^https?:\/\/[^/]/.test(value)) throw new ConfigError(`environment variable ${name}: not an http(s) URL`);
  return value;
}

function number(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number | undefined {
  const v = otel(env, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new ConfigError(`environment variable ${name}: "${v}" is not a number from ${min} to ${max}`);
  return n;
}

/** `key1=value1,key2=value2`, percent-decoded (W3C Baggage's format, which OTEL_RESOURCE_ATTRIBUTES and the header lists use). */
function pairs(env: NodeJS.ProcessEnv, name: string): Record<string, string> {
  const v = otel(env, name);
  const out: Record<string, string> = {};
  if (v === undefined) return out;
  for (const item of v.split(',')) {
    const at = item.indexOf('=');
    if (at <= 0) throw new ConfigError(`environment variable ${name}: an item is not key=value`);
    try {
      out[decodeURIComponent(item.slice(0, at).trim())] = decodeURIComponent(item.slice(at + 1).trim());
    } catch {
      throw new ConfigError(`environment variable ${name}: bad percent-encoding`);
    }
  }
  return out;
}
