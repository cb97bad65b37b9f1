/**
 * Where a lone call's time goes inside a hop: loaded into the hop with `--import` by
 * bench/lone.ts `--phases`, it marks, for each request (one at a time: concurrency 1), when each
 * of these happens, in µs since Node's HTTP server took the request's head:
 *
 *   request body read → upstream request sent (undici, just before its socket write) → upstream
 *   answer's head → its end → client answer's head written → its end called → returned (the
 *   socket write done) → finished
 *
 * from diagnostics channels (Node's HTTP server, undici) and the response's own writeHead/end, so
 * the gateway and the bare hop are read alike, without a line of either changed. On SIGUSR2 it
 * writes the median of each mark since the last SIGUSR2 to `phases-<pid>.json` in the folder
 * named by its URL's `?dir=` and starts over.
 */
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';

const dir = new URL(import.meta.url).searchParams.get('dir');
if (!dir) throw new Error('bench/phases.ts: load it as file:///…/bench/phases.ts?dir=<folder>');

let start = 0;
const marks = new Map<string, number[]>();

function mark(name: string): void {
  if (start === 0) return;
  let list = marks.get(name);
  if (!list) marks.set(name, (list = []));
  list.push(performance.now() * 1000 - start);
}

subscribe('http.server.request.start', () => {
  start = performance.now() * 1000;
});
subscribe('undici:client:sendHeaders', () => mark('upstream request sent'));
subscribe('undici:request:headers', () => mark("upstream answer's head"));
subscribe('undici:request:trailers', () => mark("upstream answer's end"));
subscribe('http.server.response.finish', () => {
  mark('finished');
  start = 0;
});

const emit = IncomingMessage.prototype.emit;
IncomingMessage.prototype.emit = function (this: IncomingMessage, event: string | symbol, ...args: unknown[]) {
  // The hop's IncomingMessages are its server's requests (its client side is undici's).
  if (event === 'end') mark('request body read');
  return emit.call(this, event, ...args);
} as typeof emit;
const writeHead = ServerResponse.prototype.writeHead;
ServerResponse.prototype.writeHead = function (this: ServerResponse, ...args: unknown[]) {
  mark("client answer's head");
  return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
} as typeof writeHead;
const end = ServerResponse.prototype.end;
ServerResponse.prototype.end = function (this: ServerResponse, ...args: unknown[]) {
  mark("client answer's end called");
  const r = (end as (...a: unknown[]) => ServerResponse).apply(this, args);
  mark('end returned (socket written)');
  return r;
} as typeof end;

process.on('SIGUSR2', () => {
  const medians: Record<string, { n: number; p50: number }> = {};
  for (const [name, list] of marks) {
    list.sort((a, b) => a - b);
    medians[name] = { n: list.length, p50: Math.round(list[Math.floor(list.length / 2)]!) };
  }
  marks.clear();
  writeFileSync(join(dir, `phases-${process.pid}.json`), JSON.stringify(medians));
});
// A scratch build can mark steps of its own: `globalThis.__mark?.('name')` where it wants one
// (docs/performance.md, "what a lone call waits for", was measured finer that way).
(globalThis as { __mark?: (name: string) => void }).__mark = mark;
