import { ConfigError } from '../errors.ts';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** A duration is milliseconds as a number, or a string like `250ms`, `30s`, `5m`, `1h`. */
export type Duration = number | string;

export const DURATION_SCHEMA = {
  anyOf: [
    { type: 'number', minimum: 0 },
    { type: 'string', pattern: DURATION.source },
  ],
} as const;

export function toMs(value: Duration, path: string): number {
  if (typeof value === 'number') return value;
  const m = DURATION.exec(value);
  if (!m) throw new ConfigError(`config key ${path}: "${value}" is not a duration (e.g. 500ms, 30s, 5m, 1h)`);
  return Math.round(Number(m[1]) * UNIT_MS[m[2]!]!);
}
