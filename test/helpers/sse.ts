import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { JSON_AND_SSE } from './raw.ts';

export interface SseEvent {
  id: string | undefined;
  data: string;
  /** The JSON-RPC message, when data is one. */
  message: { id?: unknown; method?: string; params?: { progress?: number; progressToken?: unknown }; result?: unknown; error?: { code: number; message: string; data?: { code?: string } } } | undefined;
}

/**
 * An SSE response read event by event, as a client would: `until` decides when to stop reading
 * (then the connection is dropped, like a client losing its network).
 */
export async function readSse(res: Response, until: (e: SseEvent, all: SseEvent[]) => boolean, abort?: AbortController): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  let done = false;
  const parser = createParser({
    onEvent: (m: EventSourceMessage) => {
      if (done) return;
      let message: SseEvent['message'];
      try {
        message = m.data ? (JSON.parse(m.data) as SseEvent['message']) : undefined;
      } catch {
        message = undefined;
      }
      const e = { id: m.id, data: m.data, message };
      events.push(e);
      if (until(e, events)) done = true;
    },
  });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  try {
    while (!done) {
      const { value, done: eof } = await reader.read();
      if (eof) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
  } finally {
    if (done) {
      abort?.abort();
      await reader.cancel().catch(() => {});
    }
  }
  return events;
}

/** POSTs a request expecting an SSE answer. */
export async function postSse(url: string, body: unknown, headers: Record<string, string>, abort = new AbortController()): Promise<{ res: Response; abort: AbortController }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: JSON_AND_SSE, ...headers },
    body: JSON.stringify(body),
    signal: abort.signal,
  });
  return { res, abort };
}

/** GET with Last-Event-ID: resumes a stream. */
export async function resumeSse(url: string, lastEventId: string, headers: Record<string, string>, abort = new AbortController()): Promise<{ res: Response; abort: AbortController }> {
  const res = await fetch(url, { method: 'GET', headers: { accept: 'text/event-stream', 'last-event-id': lastEventId, ...headers }, signal: abort.signal });
  return { res, abort };
}

export const slowCount = (id: number | string, count: number, delayMs: number, token: string | number = `p${id}`) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name: 'slow_count', arguments: { count, delayMs }, _meta: { progressToken: token } },
});

/** Progress values of the events, for one progress token. */
export function progressOf(events: SseEvent[], token?: unknown): number[] {
  return events
    .filter((e) => e.message?.method === 'notifications/progress' && (token === undefined || e.message.params?.progressToken === token))
    .map((e) => e.message!.params!.progress!);
}
