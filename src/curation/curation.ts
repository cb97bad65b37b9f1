import type { CurationConfig, ItemFilter, ToolEdit } from '../config/types.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import { NO_LISTS, uriReadings, rewriteRequest, type AnswerPlan, type ItemKind, type ListSpec } from '../upstream/rewrite.ts';

/**
 * What one server publishes of its upstream's tools, prompts and resources: the same for every
 * caller, so pure functions of the config. Tools pass `include`/`exclude` by their upstream name
 * and are then published under their edited name, title, description, annotations and input
 * schema; a caller's request is written back into the upstream's terms (its name, the fixed
 * arguments and defaults). A name that publishes nothing is hidden: swapped for a stand-in that
 * cannot exist, so the caller gets the upstream's own "unknown" answer (src/upstream/rewrite.ts).
 */

export interface CurationPlan extends AnswerPlan {
  /** The messages to send upstream, in its terms. */
  readonly messages: readonly Envelope[];
}


export class Curation {
  readonly #config: CurationConfig;
  /** Published name → upstream name, of renamed tools. */
  readonly #renames = new Map<string, string>();
  /** For streams read from the upstream again: lists are found by their shape. */
  readonly resumed: AnswerPlan;

  constructor(config: CurationConfig) {
    this.#config = config;
    for (const [upstream, edit] of config.tools.edits) if (edit.name !== undefined) this.#renames.set(edit.name, upstream);
    this.resumed = { lists: NO_LISTS, byShape: true, masks: [], items: (spec, items) => this.items(spec, items) };
  }

  /** The name an upstream tool is published under; undefined when it is hidden. */
  publishedTool(upstream: string): string | undefined {
    if (!passes(this.#config.tools, upstream)) return undefined;
    const published = this.#config.tools.edits.get(upstream)?.name ?? upstream;
    // Not renamed, but a renamed tool took its name: that one is published under it.
    const owner = this.#renames.get(published);
    return owner === undefined || owner === upstream ? published : undefined;
  }

  /** The upstream name of a published tool; undefined when no tool is published under this name. */
  upstreamTool(published: string): string | undefined {
    const upstream = this.#renames.get(published) ?? published;
    return this.publishedTool(upstream) === published ? upstream : undefined;
  }

  /** Whether a prompt (by name) or resource (by URI or URI template) is published. */
  shows(kind: Exclude<ItemKind, 'tools'>, name: string): boolean {
    const filter = this.#config[kind];
    if (!passes(filter, name)) return false;
    // A URI must pass as written and as the upstream may read it (URL parser, percent escapes decoded).
    if (kind !== 'resources') return true;
    return uriReadings(name).every((u) => passes(filter, u));
  }

  /** The request in the upstream's terms and how to rewrite its answer; undefined when it needs neither. */
  plan(messages: readonly Envelope[]): CurationPlan | undefined {
    const r = rewriteRequest(
      messages,
      (item) => (item.kind === 'tools' ? this.upstreamTool(item.name) : this.shows(item.kind, item.name) ? item.name : undefined),
      (m, params) => (m.method === 'tools/call' && typeof params?.name === 'string' ? this.#arguments(params, params.name) : params),
    );
    return r && { messages: r.messages, lists: r.lists, masks: r.masks, items: (spec, items) => this.items(spec, items) };
  }

  /**
   * A call's arguments with the tool's fixed ones set over the caller's (the published schema
   * does not offer them: a caller's value is overridden, never passed on) and its defaults
   * where the caller sent none.
   */
  #arguments(params: Record<string, unknown>, upstream: string): Record<string, unknown> {
    const edit = this.#config.tools.edits.get(upstream);
    if (!edit || (isEmpty(edit.fixed) && isEmpty(edit.defaults))) return params;
    const given = params.arguments;
    const args = given !== null && typeof given === 'object' && !Array.isArray(given) ? (given as Record<string, unknown>) : {};
    return { ...params, arguments: { ...edit.defaults, ...args, ...edit.fixed } };
  }

  /** One page of a list as published; undefined when it is published as it came. */
  items(spec: ListSpec, items: readonly unknown[]): unknown[] | undefined {
    let changed = false;
    const out: unknown[] = [];
    for (const item of items) {
      const published = spec.kind === 'tools' ? this.#tool(item) : this.#shown(spec, item) ? item : undefined;
      if (published !== item) changed = true;
      if (published !== undefined) out.push(published);
    }
    return changed ? out : undefined;
  }

  #shown(spec: ListSpec, item: unknown): boolean {
    const name = (item as Record<string, unknown> | null)?.[spec.key];
    return typeof name === 'string' && this.shows(spec.kind as Exclude<ItemKind, 'tools'>, name);
  }

  /** A tools/list item as published: undefined when hidden, the item itself when unchanged. */
  #tool(item: unknown): unknown {
    const name = (item as Record<string, unknown> | null)?.name;
    if (typeof name !== 'string') return undefined;
    const published = this.publishedTool(name);
    if (published === undefined) return undefined;
    const edit = this.#config.tools.edits.get(name);
    return edit ? editTool(item as Record<string, unknown>, published, edit) : item;
  }
}

function passes(filter: ItemFilter, name: string): boolean {
  if (filter.include && !filter.include.some((p) => p.test(name))) return false;
  return !filter.exclude.some((p) => p.test(name));
}

function isEmpty(o: Readonly<Record<string, unknown>>): boolean {
  for (const _ in o) return false;
  return true;
}

function editTool(tool: Record<string, unknown>, name: string, edit: ToolEdit): Record<string, unknown> {
  const out: Record<string, unknown> = { ...tool, name };
  if (edit.title !== undefined) out.title = edit.title;
  if (edit.description !== undefined) out.description = edit.description;
  if (edit.annotations) out.annotations = { ...(isObject(tool.annotations) ? tool.annotations : {}), ...edit.annotations };
  if (isObject(tool.inputSchema) && !(isEmpty(edit.fixed) && isEmpty(edit.defaults))) out.inputSchema = editSchema(tool.inputSchema, edit);
  return out;
}

/** The input schema without the fixed arguments, with the defaults as `default`; neither is required of the caller. */
function editSchema(schema: Record<string, unknown>, edit: ToolEdit): Record<string, unknown> {
  const out: Record<string, unknown> = { ...schema };
  if (isObject(schema.properties)) {
    const properties: Record<string, unknown> = { ...schema.properties };
    for (const key of Object.keys(edit.fixed)) delete properties[key];
    for (const [key, value] of Object.entries(edit.defaults)) {
      if (isObject(properties[key])) properties[key] = { ...properties[key], default: value };
    }
    out.properties = properties;
  }
  if (Array.isArray(schema.required)) out.required = schema.required.filter((k) => !Object.hasOwn(edit.fixed, k as string) && !Object.hasOwn(edit.defaults, k as string));
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
