import { createHash } from 'node:crypto';

/**
 * How a virtual server (`servers.<name>.compose`) names what its members offer. Tool and prompt
 * names become `<member>__<name>`, kept within 64 characters — the limit clients enforce — by
 * cutting the end and appending a hash of the whole name, so a name is the same on every replica
 * and in every session. Resource URIs get the member in front of their scheme
 * (`<member>+file:///x`, still a valid URI and template). Pure functions: no I/O, no state.
 */
export const MAX_NAME_LENGTH = 64;
export const NAME_SEPARATOR = '__';
/** What an MCP tool name may be: `A-Z a-z 0-9 _ - .`, 1 to 64 characters. */
const TOOL_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const HASH_LENGTH = 8;
const SHORTENED = /-[0-9a-f]{8}$/;

/** Whether `name` is a valid MCP tool name. */
export function isToolName(name: string): boolean {
  return TOOL_NAME.test(name);
}

/** A member's name prefix: its server name with what tool names may not contain made `_`. */
export function namePrefix(server: string): string {
  return server.replace(/[^A-Za-z0-9_-]/g, '_');
}

/** A member's URI scheme prefix: lower case, scheme characters only, starting with a letter. */
export function schemePrefix(server: string): string {
  const s = server.toLowerCase().replace(/[^a-z0-9.-]/g, '-');
  return /^[a-z]/.test(s) ? s : `x${s}`;
}

/** `<prefix>__<name>`, or when longer than 64 characters its head and a hash of the whole. */
export function prefixedName(prefix: string, name: string): string {
  const full = prefix + NAME_SEPARATOR + name;
  if (full.length <= MAX_NAME_LENGTH) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, HASH_LENGTH);
  let head = full.slice(0, MAX_NAME_LENGTH - HASH_LENGTH - 1);
  // Never leave half of a surrogate pair at the cut.
  if (/[\uD800-\uDBFF]$/.test(head)) head = head.slice(0, -1);
  return `${head}-${hash}`;
}

/** Whether a name may be a shortened one (only a table of the members' names can tell which). */
export function mayBeShortened(name: string): boolean {
  return name.length >= MAX_NAME_LENGTH - 1 && SHORTENED.test(name);
}

/** The member (index into `prefixes`) and original name of an unshortened virtual name. */
export function splitName(name: string, prefixes: readonly string[]): { readonly member: number; readonly name: string } | undefined {
  let best = -1;
  for (const [i, p] of prefixes.entries()) {
    if (name.startsWith(p + NAME_SEPARATOR) && (best < 0 || p.length > prefixes[best]!.length)) best = i;
  }
  return best < 0 ? undefined : { member: best, name: name.slice(prefixes[best]!.length + NAME_SEPARATOR.length) };
}

export function prefixedUri(scheme: string, uri: string): string {
  return `${scheme}+${uri}`;
}

/** The member and original URI (or URI template) of a virtual one. */
export function splitUri(uri: string, schemes: readonly string[]): { readonly member: number; readonly uri: string } | undefined {
  const plus = uri.indexOf('+');
  if (plus <= 0) return undefined;
  const member = schemes.indexOf(uri.slice(0, plus));
  const rest = uri.slice(plus + 1);
  // What a URL parser drops (outer spaces and controls, tabs and newlines anywhere) would make
  // the member read another URI than the one the virtual server's policy was asked about.
  if (member < 0 || rest.length === 0 || rest.charCodeAt(0) <= 0x20 || rest.charCodeAt(rest.length - 1) <= 0x20 || /[\t\n\r]/.test(rest)) return undefined;
  return { member, uri: rest };
}

/**
 * Pairs of members whose names could be read two ways: equal prefixes, or one prefix plus the
 * separator starting the other's (`a` and `a_`: is `a___x` tool `_x` of `a` or `x` of `a_`?).
 */
export function ambiguousMembers(servers: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (const [i, a] of servers.entries()) {
    for (const b of servers.slice(i + 1)) {
      const [pa, pb] = [namePrefix(a) + NAME_SEPARATOR, namePrefix(b) + NAME_SEPARATOR];
      if (pa.startsWith(pb) || pb.startsWith(pa) || schemePrefix(a) === schemePrefix(b)) out.push([a, b]);
    }
  }
  return out;
}

export type ItemKind = 'tools' | 'prompts' | 'resources' | 'resourceTemplates';

/** The field that names an item of each list, and how a virtual server rewrites it. */
export const ITEM_KEYS: Readonly<Record<ItemKind, 'name' | 'uri' | 'uriTemplate'>> = {
  tools: 'name',
  prompts: 'name',
  resources: 'uri',
  resourceTemplates: 'uriTemplate',
};

export interface MemberNames {
  readonly prefix: string;
  readonly scheme: string;
}

/** The virtual form of one item's identifying field. */
export function virtualKey(kind: ItemKind, member: MemberNames, value: string): string {
  return ITEM_KEYS[kind] === 'name' ? prefixedName(member.prefix, value) : prefixedUri(member.scheme, value);
}

/**
 * The union of the members' lists, identifying fields rewritten; an item whose virtual name is
 * already taken is dropped and reported (cannot happen unless two long names share a hash).
 */
export function mergeLists(
  kind: ItemKind,
  members: readonly MemberNames[],
  lists: readonly (readonly Record<string, unknown>[] | undefined)[],
): { items: Record<string, unknown>[]; collisions: string[]; table: Map<string, { member: number; original: string }> } {
  const key = ITEM_KEYS[kind];
  const items: Record<string, unknown>[] = [];
  const collisions: string[] = [];
  const table = new Map<string, { member: number; original: string }>();
  for (const [i, list] of lists.entries()) {
    for (const item of list ?? []) {
      const original = item[key];
      if (typeof original !== 'string') continue;
      const name = virtualKey(kind, members[i]!, original);
      if (table.has(name)) {
        collisions.push(name);
        continue;
      }
      table.set(name, { member: i, original });
      items.push({ ...item, [key]: name });
    }
  }
  return { items, collisions, table };
}
