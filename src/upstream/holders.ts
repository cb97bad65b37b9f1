/**
 * How many of something each caller (a holder: see Upstream.initialize) has now, for the
 * per-caller caps: stdio children, 2024-11-05 SSE connections, new 2024-11-05 client streams.
 * A holder with none has no entry, so the map never outgrows the callers that hold something.
 */
export class HolderCounts {
  readonly #counts = new Map<string, number>();

  of(holder: string): number {
    return this.#counts.get(holder) ?? 0;
  }

  add(holder: string): void {
    this.#counts.set(holder, this.of(holder) + 1);
  }

  remove(holder: string): void {
    const n = this.of(holder) - 1;
    if (n > 0) this.#counts.set(holder, n);
    else this.#counts.delete(holder);
  }
}
