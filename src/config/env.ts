import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.ts';

/**
 * Overlays `MCPGW_*` environment variables on the parsed file. A variable names a config path
 * in upper snake case (`MCPGW_LISTEN_PORT`, `MCPGW_SERVERS_DEMO_MAX_FAILS`,
 * `MCPGW_SERVERS_API_UPSTREAMS_0_URL`); the schema tells where one key ends and the next
 * begins. Values are coerced by the schema's type; objects and arrays take YAML/JSON.
 */

type Schema = Record<string, unknown>;
type Obj = Record<string, unknown>;

const RESERVED = new Set(['MCPGW_CONFIG']);

export function upperSnake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^A-Za-z0-9]+/g, '_').toUpperCase();
}

export function applyEnv(target: Obj, schema: Schema, env: NodeJS.ProcessEnv): void {
  const names = Object.keys(env).filter((n) => n.startsWith('MCPGW_') && !RESERVED.has(n)).sort();
  for (const name of names) {
    const tokens = name.slice('MCPGW_'.length).split('_');
    if (!place(target, schema, tokens, env[name] ?? '', [])) {
      throw new ConfigError(`environment variable ${name} does not name a config key`);
    }
  }
}

function place(node: Obj, schema: Schema, tokens: string[], raw: string, path: string[]): boolean {
  const props = schema.properties as Record<string, Schema> | undefined;
  if (props) {
    // Longest property name first, so LISTEN_BODY_LIMIT finds bodyLimit before body.
    const keys = Object.keys(props).sort((a, b) => upperSnake(b).length - upperSnake(a).length);
    for (const key of keys) {
      const consumed = matchPrefix(tokens, upperSnake(key));
      if (consumed > 0 && descend(node, key, props[key]!, tokens.slice(consumed), raw, path)) return true;
    }
  }
  const extra = schema.additionalProperties;
  if (extra && typeof extra === 'object') {
    // A map (servers, headers, env): prefer a key already present, else one lower-case token.
    for (const key of Object.keys(node)) {
      const consumed = matchPrefix(tokens, upperSnake(key));
      if (consumed > 0 && descend(node, key, extra as Schema, tokens.slice(consumed), raw, path)) return true;
    }
    if (tokens.length > 0) return descend(node, tokens[0]!.toLowerCase(), extra as Schema, tokens.slice(1), raw, path);
  }
  return false;
}

function descend(node: Obj, key: string, schema: Schema, rest: string[], raw: string, path: string[]): boolean {
  const here = [...path, key];
  if (rest.length === 0) {
    node[key] = coerce(raw, schema, here);
    return true;
  }
  if (schema.type === 'array') {
    const index = Number(rest[0]);
    if (!Number.isInteger(index) || index < 0) return false;
    const arr = Array.isArray(node[key]) ? (node[key] as unknown[]) : [];
    const item = (arr[index] ?? {}) as Obj;
    if (typeof item !== 'object' || item === null) return false;
    const itemSchema = schema.items as Schema;
    if (rest.length === 1) {
      arr[index] = coerce(raw, itemSchema, [...here, String(index)]);
    } else if (!place(item, itemSchema, rest.slice(1), raw, [...here, String(index)])) {
      return false;
    } else {
      arr[index] = item;
    }
    node[key] = arr;
    return true;
  }
  const child = node[key];
  const obj = child && typeof child === 'object' && !Array.isArray(child) ? (child as Obj) : {};
  if (!place(obj, schema, rest, raw, here)) return false;
  node[key] = obj;
  return true;
}

function matchPrefix(tokens: string[], snake: string): number {
  const parts = snake.split('_');
  if (parts.length > tokens.length) return 0;
  for (let i = 0; i < parts.length; i++) if (parts[i] !== tokens[i]) return 0;
  return parts.length;
}

function coerce(raw: string, schema: Schema, path: string[]): unknown {
  const types = schemaTypes(schema);
  if (types.has('object') || types.has('array')) {
    try {
      return parseYaml(raw);
    } catch {
      throw new ConfigError(`config key ${path.join('.')} (from the environment): not valid YAML/JSON`);
    }
  }
  if ((types.has('integer') || types.has('number')) && /^-?\d+(\.\d+)?$/.test(raw)) return Number(raw);
  if (types.has('boolean') && (raw === 'true' || raw === 'false')) return raw === 'true';
  return raw;
}

function schemaTypes(schema: Schema): Set<string> {
  const out = new Set<string>();
  const visit = (s: Schema) => {
    if (typeof s.type === 'string') out.add(s.type);
    for (const k of ['anyOf', 'oneOf'] as const) for (const sub of (s[k] as Schema[] | undefined) ?? []) visit(sub);
    if (s.properties || s.additionalProperties) out.add('object');
  };
  visit(schema);
  return out;
}
