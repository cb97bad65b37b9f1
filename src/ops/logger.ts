import { pino, type Logger, type DestinationStream } from 'pino';

/** Paths pino redacts everywhere, set once: tokens and secrets never reach the log. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.cookie',
  '*.authorization',
  'req.headers["x-api-key"]',
  'headers["x-api-key"]',
  '*.access_token',
  '*.accessToken',
  '*.refresh_token',
  '*.client_secret',
  '*.clientSecret',
  '*.credentials',
  '*.password',
  '*.secret',
  '*.token',
  '*.api_key',
  '*.apiKey',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, base: { service: 'mcp-gateway' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination);
}
