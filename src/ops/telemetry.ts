import type { Logger } from 'pino';
import type { TelemetryConfig } from '../config/types.ts';
import type { Tracing } from './tracing.ts';

export type { RequestTrace, Tracing } from './tracing.ts';

/**
 * traces: starts OpenTelemetry when the configuration turns it on (src/config/telemetry.ts).
 * Off, nothing of it is loaded — not the SDK, not an exporter — and every place that would trace
 * holds `undefined`, one branch on the hot path.
 */
export async function startTracing(config: TelemetryConfig | undefined, log: Logger): Promise<Tracing | undefined> {
  if (config === undefined) return undefined;
  const { Tracing } = await import('./tracing.ts');
  const tracing = await Tracing.start(config, (error) => log.warn({ error, url: config.url }, 'traces could not be exported (spans dropped)'));
  log.info({ exporter: config.exporter, url: config.exporter === 'otlp' ? config.url : undefined, protocol: config.protocol, sampler: config.sampler }, 'traces on');
  return tracing;
}
