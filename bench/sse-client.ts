import { request, type ClientRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { PROTOCOL_VERSION } from './mcp-client.ts';

/**
 * GET streams on connections of their own (node:http, no agent): an idle standalone stream holds
 * its connection for as long as it is open, and a resuming client is one whose connection broke.
 */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
  readonly path: string;
}

export function endpointOf(url: string): Endpoint {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), path: u.pathname + u.search };
}

function get(to: Endpoint, sessionId: string, lastEventId?: string): ClientRequest {
  const headers: Record<string, string> = { accept: 'text/event-stream', 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL_VERSION };
  if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
  return request({ host: to.host, port: to.port, path: to.path, method: 'GET', headers, agent: false });
}

/** An open standalone stream: `close` drops its connection. */
export interface IdleStream {
  close(): void;
}

/**
 * Opens the session's standalone GET stream and leaves it open, reading (and dropping) whatever
 * comes: the priming event, keep-alive comments. Resolves once the 200 response has begun.
 */
export function openIdleStream(to: Endpoint, sessionId: string, timeoutMs: number): Promise<IdleStream> {
  return new Promise((resolve, reject) => {
    const req = get(to, sessionId);
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer to the GET within ${timeoutMs} ms`));
    }, timeoutMs);
    req.once('response', (res) => {
      clearTimeout(timer);
      if (res.statusCode !== 200) {
        req.destroy();
        reject(new Error(`GET answered HTTP ${res.statusCode}`));
        return;
      }
      res.on('error', () => {});
      res.resume();
      resolve({ close: () => req.destroy() });
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}

/** A message event (non-empty data) in what has arrived so far. */
const MESSAGE = /^data: ?\S/m;

/**
 * GET with `Last-Event-ID` on a new connection. Resolves with the ms from sending the request
 * (connecting included) to the first replayed message, once `expect` (the resumed request's
 * answer) has arrived too; then drops the connection (an upstream may keep a replayed stream open).
 */
export function resumeOnce(to: Endpoint, sessionId: string, lastEventId: string, expect: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = get(to, sessionId, lastEventId);
    let firstMs: number | undefined;
    let text = '';
    const fail = (err: Error) => {
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`resume did not replay the answer within ${timeoutMs} ms`)), timeoutMs);
    req.once('response', (res) => {
      if (res.statusCode !== 200) return fail(new Error(`resume GET answered HTTP ${res.statusCode}`));
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (firstMs === undefined && MESSAGE.test(text)) firstMs = performance.now() - t0;
        if (firstMs !== undefined && text.includes(expect)) {
          clearTimeout(timer);
          req.destroy();
          resolve(firstMs);
        }
      });
      res.once('end', () => fail(new Error(`the resumed stream ended without the answer (${text.length} bytes replayed)`)));
      res.on('error', () => {});
    });
    req.on('error', (err) => fail(err));
    req.end();
  });
}
