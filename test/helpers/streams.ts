import type { Gateway } from '../../src/gateway.ts';

/** A client's standalone GET stream, read as text as it arrives. */
export interface OpenStream {
  /** Resolves once the text read so far contains `needle`. */
  waitFor(needle: string, timeoutMs?: number): Promise<string>;
  close(): void;
}

export async function openGetStream(url: string, headers: Record<string, string>): Promise<OpenStream> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  if (res.status !== 200 || !res.body) throw new Error(`GET stream: ${res.status} ${await res.text()}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  return {
    async waitFor(needle, timeoutMs = 5_000) {
      const timer = setTimeout(() => abort.abort(new Error(`no "${needle}" on the stream; got: ${text}`)), timeoutMs);
      try {
        while (!text.includes(needle)) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`stream ended without "${needle}"; got: ${text}`);
          text += decoder.decode(value, { stream: true });
        }
        return text;
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => abort.abort(),
  };
}

/** The value of one series of a counter or gauge of a gateway's registry (0 when absent). */
export async function metricValue(gw: Gateway, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = gw.metrics.registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  const match = values.find((v) => Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x));
  return match?.value ?? 0;
}

/** Polls `check` every 20 ms until it holds (or throws after `timeoutMs`). */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
