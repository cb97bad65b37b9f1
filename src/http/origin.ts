/**
 * Origin allow-list (DNS-rebinding protection). A request without Origin is not from a browser
 * and passes; one with Origin must match an entry: exact (`https://app.example.com`), any port
 * (`http://localhost:*`) or `*` for any.
 */
export class OriginPolicy {
  readonly #exact = new Set<string>();
  readonly #anyPort: string[] = [];
  readonly #all: boolean;

  constructor(allowed: readonly string[]) {
    this.#all = allowed.includes('*');
    for (const entry of allowed) {
      const e = entry.toLowerCase().replace(/\/+$/, '');
      if (e.endsWith(':*')) this.#anyPort.push(e.slice(0, -2));
      else this.#exact.add(e);
    }
  }

  allows(origin: string | undefined): boolean {
    if (origin === undefined || this.#all) return true;
    const o = origin.toLowerCase();
    if (this.#exact.has(o)) return true;
    for (const base of this.#anyPort) {
      if (o === base) return true;
      if (o.startsWith(base) && o.charCodeAt(base.length) === 58 /* : */ && /^\d{1,5}$/.test(o.slice(base.length + 1))) return true;
    }
    return false;
  }
}
