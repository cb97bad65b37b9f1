import { pino, type Logger, type DestinationStream } from 'pino';
import { redactUrls } from '../config/redact.ts';

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
  return pino({ level, base: { service: 'mcp-gateway' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, formatters: { log: redactUrlFields } }, destination);
}

/**
 * Paths cannot catch a secret inside a value: a URL's userinfo or query (a stdio child's stderr
 * naming its database, a session sealed when replicas were keyed by URL). Every top-level string
 * field that holds a URL is redacted by the rule `--print-config` uses; the rest is untouched.
 */
function redactUrlFields(fields: Record<string, unknown>): Record<string, unknown> {
  let out = fields;
  for (const key of Object.keys(fields)) {
    const value = fields[key];
    if (typeof value !== 'string' || !value.includes('://')) continue;
    const redacted = redactUrls(value);
    if (redacted === value) continue;
    // A copy: the object is the caller's.
    if (out === fields) out = { ...fields };
    out[key] = redacted;
  }
  return out;
}
