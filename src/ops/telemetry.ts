import type { TelemetryConfig } from '../config/types.ts';
import type { Tracing } from './tracing.ts';

export type { RequestTrace, Tracing } from './tracing.ts';

/**
 * traces: starts OpenTelemetry when the configuration turns it on (src/config/telemetry.ts).
 * Off, nothing of it is loaded — not the SDK, not an exporter — and every place that would trace
 * holds `undefined`, one branch on the hot path.
 */
export async function startTracing(config: TelemetryConfig | undefined): Promise<Tracing | undefined> {
  if (config === undefined) return undefined;
  const { Tracing } = await import('./tracing.ts');
  return Tracing.start(config);
}
