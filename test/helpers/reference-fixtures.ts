import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32, deflateSync } from 'node:zlib';

/**
 * What our reference MCP servers (conformance-server.ts on SDK v1, era-server.ts on SDK v2) share:
 * the media their fixtures return, a resumable in-memory event log, the DNS-rebinding check.
 */

// ---------------------------------------------------------------------------------------------
// Media, built here rather than pasted as opaque base64.

/** A 1×1 PNG of one RGB colour. */
export function onePixelPng(r: number, g: number, b: number): string {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(1, 0); // width
  header.writeUInt32BE(1, 4); // height
  header.writeUInt8(8, 8); // bit depth
  header.writeUInt8(2, 9); // colour type: truecolour
  const scanline = Buffer.from([0, r, g, b]); // filter byte 0, then the pixel
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(scanline)),
    chunk('IEND', Buffer.alloc(0)),
  ]).toString('base64');
}

/** A short 8 kHz mono 16-bit PCM WAV: a 440 Hz tone of `ms` milliseconds. */
export function toneWav(ms: number): string {
  const rate = 8000;
  const samples = Math.round((rate * ms) / 1000);
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) data.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]).toString('base64');
}

// ---------------------------------------------------------------------------------------------
// Elicitation forms the suite asks for: every field with a default (SEP-1034), every enum shape (SEP-1330).

export const DEFAULTS_FORM = {
  message: 'Please review your profile',
  requestedSchema: {
    type: 'object',
    properties: {
      name: { type: 'string', title: 'Name', default: 'John Doe' },
      age: { type: 'integer', title: 'Age', minimum: 0, default: 30 },
      score: { type: 'number', title: 'Score', default: 95.5 },
      status: { type: 'string', title: 'Status', enum: ['active', 'inactive', 'pending'], default: 'active' },
      verified: { type: 'boolean', title: 'Verified', default: true },
    },
  },
} as const;

const titled = (prefix: string, titles: string[]) => titles.map((title, i) => ({ const: `${prefix}${i + 1}`, title }));
export const ENUMS_FORM = {
  message: 'Pick some options',
  requestedSchema: {
    type: 'object',
    properties: {
      untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
      titledSingle: { type: 'string', oneOf: titled('value', ['First Option', 'Second Option', 'Third Option']) },
      legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
      untitledMulti: { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
      titledMulti: { type: 'array', items: { anyOf: titled('value', ['First Choice', 'Second Choice', 'Third Choice']) } },
    },
  },
} as const;

// ---------------------------------------------------------------------------------------------
// Resumability: each session keeps its recent events; an event id names the stream it belongs to,
// so a resume replays only that stream. Generic over the SDK's message type (v1 and v2 alike).

export class MemoryEventStore<M extends object> {
  private readonly events = new Map<string, { streamId: string; message: M }>();
  private seq = 0;
  private readonly limit: number;
  constructor(limit = 1000) {
    this.limit = limit;
  }

  async storeEvent(streamId: string, message: M): Promise<string> {
    const id = `${streamId}.${++this.seq}`;
    this.events.set(id, { streamId, message });
    if (this.events.size > this.limit) this.events.delete(this.events.keys().next().value!);
    return id;
  }

  async getStreamIdForEventId(eventId: string): Promise<string | undefined> {
    return this.events.get(eventId)?.streamId;
  }

  async replayEventsAfter(lastEventId: string, { send }: { send: (eventId: string, message: M) => Promise<void> }): Promise<string> {
    const last = this.events.get(lastEventId);
    if (!last) throw new Error(`Unknown event id ${lastEventId}`);
    let after = false;
    for (const [id, event] of this.events) {
      if (id === lastEventId) after = true;
      // The priming event ({}) only marks a position; there is nothing to resend.
      else if (after && event.streamId === last.streamId && Object.keys(event.message).length > 0) await send(id, event.message);
    }
    return last.streamId;
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** DNS-rebinding protection: the Host (and Origin, when sent) must name a loopback host. */
export function fromLoopback(req: IncomingMessage): boolean {
  const hostname = (value: string) => {
    try {
      return new URL(`http://${value}`).hostname;
    } catch {
      return '';
    }
  };
  if (!LOOPBACK.has(hostname(req.headers.host ?? ''))) return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return LOOPBACK.has(new URL(origin).hostname);
  } catch {
    return false;
  }
}

export function rpcError(res: ServerResponse, status: number, code: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } }));
}

/**
 * Serves `/mcp` on 127.0.0.1 (`--port`, default random) behind the loopback check, says
 * `{"listening":<port>}` on stdout, and on SIGTERM/SIGINT runs `close` and exits.
 */
export async function serveMcp(handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>, close: () => Promise<unknown>): Promise<void> {
  const http = createServer((req, res) => {
    if (!fromLoopback(req)) return rpcError(res, 403, -32600, 'Forbidden: Host or Origin is not a loopback address');
    if (new URL(req.url ?? '/', 'http://127.0.0.1').pathname !== '/mcp') return rpcError(res, 404, -32600, 'Not found: the MCP endpoint is /mcp');
    handle(req, res).catch((err: unknown) => (res.headersSent ? res.destroy() : rpcError(res, 500, -32603, `Internal error: ${String(err)}`)));
  });
  const portAt = process.argv.indexOf('--port');
  await new Promise<void>((resolve) => http.listen(portAt >= 0 ? Number(process.argv[portAt + 1]) : 0, '127.0.0.1', resolve));
  process.stdout.write(JSON.stringify({ listening: (http.address() as AddressInfo).port }) + '\n');
  const stop = () =>
    void Promise.allSettled([close()]).then(() => {
      http.closeAllConnections();
      http.close(() => process.exit(0));
    });
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
