import { ConfigError } from '../errors.ts';
import type { CurationConfig, ItemFilter, NamePattern, ToolEdit } from './types.ts';

/** curation keys of one server as the schema checked them (src/config/schema.ts). */
export interface RawCuration {
  tools?: RawFilter & { edit: Record<string, RawToolEdit> };
  prompts?: RawFilter;
  resources?: RawFilter;
}

interface RawFilter {
  include?: string[];
  exclude?: string[];
}

interface RawToolEdit {
  name?: string;
  title?: string;
  description?: string;
  annotations?: Record<string, unknown>;
  fixed: Record<string, unknown>;
  defaults: Record<string, unknown>;
}

/**
 * A name, or a pattern where `*` stands for any characters (none included). Matched without a
 * regular expression: `^a.*b.*c$` backtracks polynomially on a long name (a caller's tool name
 * or URI: a resource pattern with two stars took 80 s on a 1 MB URI, the event loop blocked),
 * while the pattern's literal parts found leftmost, in order, take linear time.
 */
export function globPattern(glob: string): NamePattern {
  return new GlobPattern(glob);
}

/**
 * A class, its only own field the glob: a reload compares configurations deeply
 * (src/config/reload.ts), and a closure made per load made every server with a pattern differ
 * from itself — a curated server's pool was rebuilt by every reload, its stdio sessions ended.
 */
class GlobPattern implements NamePattern {
  readonly glob: string;
  /** Derived from the glob (so not compared): its literal parts, undefined for a plain name. */
  readonly #parts: readonly string[] | undefined;

  constructor(glob: string) {
    this.glob = glob;
    const parts = glob.split('*');
    this.#parts = parts.length === 1 ? undefined : parts;
  }

  test(name: string): boolean {
    const parts = this.#parts;
    if (parts === undefined) return name === this.glob;
    const first = parts[0]!;
    const last = parts[parts.length - 1]!;
    if (name.length < first.length + last.length || !name.startsWith(first) || !name.endsWith(last)) return false;
    const end = name.length - last.length;
    let at = first.length;
    for (let i = 1; i < parts.length - 1; i++) {
      const part = parts[i]!;
      if (part === '') continue;
      const found = name.indexOf(part, at);
      if (found === -1 || found + part.length > end) return false;
      at = found + part.length;
    }
    return true;
  }
}

/**
 * A server's curation, checked: every tool has one published name and every published name one
 * tool. Renames are checked against each other and against the other edited tools; an upstream
 * tool nobody renamed whose name a renamed one takes is hidden at run time (src/curation/).
 */
export function resolveCuration(at: string, raw: RawCuration): CurationConfig {
  const edits = new Map<string, ToolEdit>();
  const publishedBy = new Map<string, string>();
  for (const [upstream, e] of Object.entries(raw.tools?.edit ?? {})) {
    const here = `${at}.tools.edit.${upstream}`;
    if (upstream.length === 0) throw new ConfigError(`config key ${at}.tools.edit names a tool with an empty name`);
    const both = Object.keys(e.fixed).find((k) => Object.hasOwn(e.defaults, k));
    if (both !== undefined) throw new ConfigError(`config key ${here}: argument "${both}" is both fixed and a default; choose one`);
    const published = e.name ?? upstream;
    const other = publishedBy.get(published);
    if (other !== undefined) throw new ConfigError(`config key ${here}: tools "${other}" and "${upstream}" would both be published as "${published}"`);
    publishedBy.set(published, upstream);
    edits.set(upstream, { name: e.name, title: e.title, description: e.description, annotations: e.annotations, fixed: e.fixed, defaults: e.defaults });
  }
  return {
    tools: { ...filter(raw.tools), edits },
    prompts: filter(raw.prompts),
    resources: filter(raw.resources),
  };
}

function filter(raw: RawFilter | undefined): ItemFilter {
  return { include: raw?.include?.map(globPattern), exclude: (raw?.exclude ?? []).map(globPattern) };
}
