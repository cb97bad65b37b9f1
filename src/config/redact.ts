/**
 * What the gateway shows of configured values: `--print-config`, replica names (metric labels,
 * log fields, session placement) and URLs in log lines. Secrets are found by rule on the value,
 * not only by the key they sit under: an operator puts them wherever a service wants them — a
 * query parameter, URL userinfo, a path segment, `--token=…` on a command line. Every rule errs
 * towards hiding: a value hidden by mistake costs a look at the file, a secret shown costs a
 * rotation.
 */

export const REDACTED = '[redacted]';

/** Config keys whose string values are secrets (or name where one is: hidden too, harmlessly). */
const SECRET_KEY = /secret|password|passwd|token|api[-_]?key|authorization|credential/i;

const URL_KEY = /ur[il]$/i;

/** A flag or variable name that announces a secret; broad on purpose (`--keyfile` hidden costs nothing). */
const SECRET_NAME = /token|secret|key|pass|pwd|auth|credential|bearer|cookie|session/i;

/** `NAME=value`, `-NAME=value`, `--NAME=value`. */
const ASSIGNMENT = /^(-{0,2})([A-Za-z_][A-Za-z0-9_.-]*)=/;
/** An upper-case NAME: `NAME=value` sets an environment variable (`env`, `docker -e`), where secrets go. */
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
const FLAG = /^--?[A-Za-z][A-Za-z0-9_.-]*$/;
const LONG_FLAG = /^--[A-Za-z][A-Za-z0-9_.-]*(=.*)?$/s;

const TOKEN_CHARS = /^[A-Za-z0-9_\-.~+/=]+$/;
const FILE_NAME = /\.[A-Za-z][A-Za-z0-9]{0,5}$/;
const PATH_START = /^(\.{0,2}|~)\//;

/** Where a URL starts inside other text, up to where it plainly ends. */
const URL_IN_TEXT = /[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>]+/g;

/**
 * An API key, a JWT, a UUID: 20 or more characters of a token alphabet, with letters and digits,
 * that do not read as a file name or path (`dist/server-v2.js`, `/opt/mcp/bin`).
 */
export function looksLikeToken(s: string): boolean {
  return s.length >= 20 && TOKEN_CHARS.test(s) && /[A-Za-z]/.test(s) && /\d/.test(s) && !FILE_NAME.test(s) && !PATH_START.test(s);
}

/**
 * A URL without its secrets: the password of its userinfo (all of a userinfo without one, often
 * a token), every query value, the fragment, and path segments that look like tokens. A URL with
 * none of these comes back unchanged, as written.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return redactUnparsed(url);
  }
  const path = redactPath(u.pathname);
  if (!u.username && !u.password && !u.search && !u.hash && path === u.pathname) return url;
  const userinfo = u.password ? `${u.username}:${REDACTED}@` : u.username ? `${REDACTED}@` : '';
  return `${u.protocol}//${userinfo}${u.host}${path}${redactQuery(u.search)}${u.hash ? `#${REDACTED}` : ''}`;
}

/** `text` with every URL in it redacted (redactUrl). */
export function redactUrls(text: string): string {
  return text.includes('://') ? text.replace(URL_IN_TEXT, redactUrl) : text;
}

/**
 * A URL as a public name: scheme, host, port and path — never userinfo, query or fragment, and
 * path segments that look like tokens hidden. Replicas are named so in metrics, logs and session ids.
 */
export function publicUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${redactPath(u.pathname)}`;
}

/**
 * The arguments of a stdio command as they may be shown:
 * - `--flag=value`, `-flag=value`, `flag=value`: the value is hidden when the name reads as a
 *   secret (SECRET_NAME), and `NAME=value` with an upper-case NAME always (an environment
 *   variable, as `env` values are);
 * - `--flag value`: the argument after a flag whose name reads as a secret is hidden (unless it
 *   is itself a `--flag`);
 * - any other argument or value that looks like a token is hidden; URLs in it are redacted.
 */
export function redactArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  let valueNext = false;
  for (const arg of args) {
    if (valueNext && !LONG_FLAG.test(arg)) {
      out.push(REDACTED);
      valueNext = false;
      continue;
    }
    valueNext = false;
    const assign = ASSIGNMENT.exec(arg);
    if (assign) {
      const [prefix, dashes, name] = assign as unknown as [string, string, string];
      const secret = SECRET_NAME.test(name) || (dashes === '' && ENV_NAME.test(name));
      out.push(prefix + (secret ? REDACTED : redactValue(arg.slice(prefix.length))));
    } else if (FLAG.test(arg)) {
      valueNext = SECRET_NAME.test(arg);
      out.push(arg);
    } else {
      out.push(redactValue(arg));
    }
  }
  return out;
}

/**
 * The effective config as `--print-config` shows it: strings under a secret-named key, every
 * `headers` and `env` value, and the args rules (redactArgs) hidden; every URL anywhere redacted.
 */
export function redactConfig(effective: Readonly<Record<string, unknown>>): unknown {
  const walk = (v: unknown, key: string, parent: string): unknown => {
    if (typeof v === 'string') {
      // A URL under a secret-named key (`tokenUrl`) keeps what the URL rule leaves of it.
      if ((SECRET_KEY.test(key) && !URL_KEY.test(key)) || parent === 'headers' || parent === 'env') return REDACTED;
      return redactUrls(v);
    }
    if (Array.isArray(v)) {
      if (key === 'args' && v.every((x) => typeof x === 'string')) return redactArgs(v as string[]);
      return v.map((x) => walk(x, key, parent));
    }
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, k, key);
      return out;
    }
    return v;
  };
  return walk(effective, '', '');
}

function redactValue(value: string): string {
  return looksLikeToken(value) ? REDACTED : redactUrls(value);
}

function redactPath(path: string): string {
  return path.includes('/') ? path.split('/').map((s) => (looksLikeToken(s) ? REDACTED : s)).join('/') : path;
}

function redactQuery(search: string): string {
  if (!search) return '';
  const params = search.slice(1).split('&');
  return `?${params.map((p) => (p === '' ? p : p.includes('=') ? `${p.slice(0, p.indexOf('='))}=${REDACTED}` : REDACTED)).join('&')}`;
}

/**
 * A URL the WHATWG parser refuses (a password with a raw `/` in it, say): everything up to the
 * last `@` before the query is taken for userinfo, so a half-parsed secret is hidden, not shown.
 */
function redactUnparsed(url: string): string {
  const scheme = url.indexOf('://') + 3;
  const hash = url.indexOf('#', scheme);
  const beforeHash = hash === -1 ? url : url.slice(0, hash);
  const q = beforeHash.indexOf('?', scheme);
  let main = q === -1 ? beforeHash.slice(scheme) : beforeHash.slice(scheme, q);
  const at = main.lastIndexOf('@');
  if (at !== -1) main = `${REDACTED}@${main.slice(at + 1)}`;
  return `${url.slice(0, scheme)}${redactPath(main)}${q === -1 ? '' : redactQuery(beforeHash.slice(q))}${hash === -1 || hash === url.length - 1 ? '' : `#${REDACTED}`}`;
}
