import { pino, type Logger, type DestinationStream } from 'pino';

/**
 * Paths pino redacts everywhere, set once: credentials never reach the log. Session ids are
 * bearer credentials too (whoever holds one can use the session).
 */
const SECRET_KEYS = ['authorization', 'cookie', 'password', 'secret', 'token', 'accessToken', 'access_token', 'refreshToken', 'refresh_token', 'clientSecret', 'client_secret', 'credentials', 'api_key', 'apiKey'];

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["mcp-session-id"]',
  'req.headers["x-api-key"]',
  'headers["mcp-session-id"]',
  'headers["x-api-key"]',
  '*.headers.authorization',
  '*.headers.cookie',
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  'headers.authorization',
  'headers.cookie',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, base: { service: 'mcp-gateway' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } }, destination);
}
