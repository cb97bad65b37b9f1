import { encodeHeaderValue } from './stateless.ts';

/**
 * Revision 2026-07-28's `Mcp-Param-{Name}` headers: a tool's input schema marks arguments with
 * `x-mcp-header: Name`, and a client mirrors their values into headers an intermediary may route
 * on. Here: reading a schema's marks (with the revision's rules for them), and writing the
 * headers of a call from its arguments — the ones the gateway sends, never a caller's header.
 */

/** One `x-mcp-header` mark: the header's name part, and the chain of `properties` keys to its argument. */
export interface ParamHeader {
  readonly name: string;
  readonly path: readonly string[];
}

/** At most this many Mcp-Param-* headers go upstream, each value at most this long. */
export const MAX_PARAM_HEADERS = 32;
export const MAX_PARAM_HEADER_LENGTH = 4_096;

const MARK = 'x-mcp-header';
/** RFC 9110 token (`1*tchar`). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Types a mark may be on (`number` is not allowed). */
const PRIMITIVE = new Set(['string', 'integer', 'boolean']);
/** Schemas are data from an upstream: walked this deep at most. */
const MAX_DEPTH = 32;

/**
 * The `x-mcp-header` marks of a tool's input schema, in schema order; undefined when a mark
 * breaks the revision's rules (not a token, repeated case-insensitively, on a non-primitive or
 * `number` property, or not reachable through `properties` keys alone): the tool definition is
 * then invalid, and no header can be written for it.
 */
export function paramHeadersOf(inputSchema: unknown): readonly ParamHeader[] | undefined {
  const found: ParamHeader[] = [];
  const seen = new Set<string>();
  // Marks reachable through `properties` chains; every other one found makes the schema invalid.
  const reach = (schema: Record<string, unknown>, path: readonly string[], depth: number): boolean => {
    if (depth > MAX_DEPTH) return false;
    for (const [key, value] of Object.entries(schema)) {
      if (key === 'properties' && isObject(value)) {
        for (const [prop, sub] of Object.entries(value)) {
          if (!isObject(sub)) continue;
          const at = [...path, prop];
          if (Object.hasOwn(sub, MARK)) {
            const name = sub[MARK];
            if (typeof name !== 'string' || !TOKEN.test(name) || seen.has(name.toLowerCase()) || typeof sub.type !== 'string' || !PRIMITIVE.has(sub.type)) return false;
            seen.add(name.toLowerCase());
            found.push({ name, path: at });
          }
          if (!reach(sub, at, depth + 1)) return false;
        }
      } else if (key !== MARK && key !== 'properties' && hasMark(value, depth + 1)) {
        return false;
      }
    }
    return true;
  };
  if (!isObject(inputSchema)) return [];
  // A mark on the schema itself names no argument.
  if (Object.hasOwn(inputSchema, MARK)) return undefined;
  return reach(inputSchema, [], 0) ? found : undefined;
}

/** Whether a mark sits anywhere in `node` (a keyword other than a `properties` chain: `items`, `oneOf`, `$defs`, …). */
function hasMark(node: unknown, depth: number): boolean {
  if (depth > MAX_DEPTH) return true;
  if (Array.isArray(node)) return node.some((n) => hasMark(n, depth + 1));
  if (!isObject(node)) return false;
  if (Object.hasOwn(node, MARK)) return true;
  return Object.values(node).some((n) => hasMark(n, depth + 1));
}

/**
 * The Mcp-Param-* headers (lower-case names) of a call with these arguments: each mark whose
 * argument has a value gets its header, the value encoded per the revision (a string as it is or
 * `=?base64?…?=`, an integer in decimal, a boolean as `true`/`false`); an absent or `null`
 * argument, or one of another type, gets none (the upstream then refuses a mismatch, as it must).
 * At most MAX_PARAM_HEADERS headers, none longer than MAX_PARAM_HEADER_LENGTH.
 */
export function writeParamHeaders(marks: readonly ParamHeader[], args: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  let n = 0;
  for (const mark of marks) {
    const value = paramHeaderValue(valueAt(args, mark.path));
    if (value === undefined || value.length > MAX_PARAM_HEADER_LENGTH) continue;
    if (++n > MAX_PARAM_HEADERS) break;
    out[`mcp-param-${mark.name.toLowerCase()}`] = value;
  }
  return out;
}

/**
 * Whether some marked argument of `args` has a value none of the call's headers carries: one of
 * another type, too long, or past MAX_PARAM_HEADERS. The upstream refuses such a call whatever
 * marks it has (a value without its header), so the refusal says nothing of the marks.
 */
export function hasUnwrittenParam(marks: readonly ParamHeader[], args: unknown): boolean {
  let present = 0;
  for (const mark of marks) {
    const value = valueAt(args, mark.path);
    if (value !== undefined && value !== null) present++;
  }
  return Object.keys(writeParamHeaders(marks, args)).length < present;
}

function paramHeaderValue(value: unknown): string | undefined {
  if (typeof value === 'string') return encodeHeaderValue(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return undefined;
}

function valueAt(args: unknown, path: readonly string[]): unknown {
  let node = args;
  for (const key of path) {
    if (!isObject(node) || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
