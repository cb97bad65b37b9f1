/**
 * What tools/list said about each tool, per server, as this replica last saw it: whether a call
 * only reads (`readOnlyHint`) or may safely be repeated (`idempotentHint`). A tool never seen in
 * a list is neither — not retried, and it empties the server's cache when called.
 */
export interface ToolHint {
  readonly readOnly: boolean;
  readonly idempotent: boolean;
}

const UNKNOWN: ToolHint = { readOnly: false, idempotent: false };
/** Tools remembered per server: lists are paginated and bounded by the upstream, this bounds us. */
const MAX_TOOLS = 10_000;

export class ToolHints {
  readonly #byServer = new Map<string, Map<string, ToolHint>>();

  get(server: string, tool: string | undefined): ToolHint {
    return (tool !== undefined && this.#byServer.get(server)?.get(tool)) || UNKNOWN;
  }

  /** True once a tools/list of this server was seen. */
  knows(server: string): boolean {
    return this.#byServer.has(server);
  }

  /** Learns from one tools/list result (one page of it). */
  learn(server: string, result: Readonly<Record<string, unknown>>): void {
    const tools = result.tools;
    if (!Array.isArray(tools)) return;
    let known = this.#byServer.get(server);
    if (!known) this.#byServer.set(server, (known = new Map()));
    for (const t of tools as { name?: unknown; annotations?: { readOnlyHint?: unknown; idempotentHint?: unknown } }[]) {
      if (typeof t?.name !== 'string') continue;
      if (known.size >= MAX_TOOLS && !known.has(t.name)) known.clear();
      const a = t.annotations;
      known.set(t.name, { readOnly: a?.readOnlyHint === true, idempotent: a?.idempotentHint === true });
    }
  }
}
