import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { GatewayError } from '../errors.ts';
import { brokenOff } from '../protocol/answers.ts';
import { idKey } from '../protocol/jsonrpc.ts';
import { EventSize, tooLarge } from '../protocol/sse.ts';
import type { UpstreamResponse } from './types.ts';
import { discard } from './body.ts';

/**
 * Reading JSON-RPC messages out of an upstream answer, for the places where the gateway speaks
 * for the client instead of passing bytes through: the 2024-11-05 transports (both sides) and
 * virtual servers.
 */

/** A buffered answer larger than this is refused rather than held in memory. */
const MAX_BUFFERED = 16 * 1024 * 1024;

/**
 * Calls `onEvent` for each SSE event of `body` as it arrives (and `onRetry` for each `retry:`
 * field), then `onClose` once: without an argument when the stream ended, with the error when it broke.
 */
export function readSseEvents(body: Readable, onEvent: (e: EventSourceMessage) => void, onClose: (err?: Error) => void, onRetry?: (ms: number) => void): void {
  const parser = createParser({ onEvent, onRetry });
  // undici's body ignores setEncoding; a decoder keeps multi-byte characters split across chunks whole.
  const decoder = new StringDecoder('utf8');
  let closed = false;
  const close = (err?: Error) => {
    if (closed) return;
    closed = true;
    onClose(err);
  };
  const size = new EventSize();
  body.on('data', (chunk: Buffer | string) => {
    const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
    if (size.ok(text)) parser.feed(text);
    else body.destroy(tooLarge());
  });
  body.once('end', () => close());
  body.once('error', (err) => close(err));
  body.once('close', () => close(body.readableEnded ? undefined : new Error('the stream closed early')));
}

/** The messages of a JSON body (one message or a batch array), each as its own JSON text. */
export function splitJson(text: string): string[] {
  const value = JSON.parse(text) as unknown;
  return Array.isArray(value) ? value.map((m) => JSON.stringify(m)) : [text];
}

export function isSse(res: UpstreamResponse): res is UpstreamResponse & { body: Readable } {
  return res.body !== null && typeof res.body !== 'string' && (res.headers['content-type'] ?? '').startsWith('text/event-stream');
}

/**
 * A whole answer's text. One the upstream broke off is MCPGW_ERR_STREAM_LOST (a time limit, or
 * another gateway error that ended it, says so itself); one past 16 MiB, an upstream protocol error.
 */
export async function readText(body: Readable | string): Promise<string> {
  if (typeof body === 'string') return body;
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      size += b.length;
      if (size > MAX_BUFFERED) {
        discard(body);
        throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', 'an answer larger than 16 MiB');
      }
      chunks.push(b);
    }
  } catch (err) {
    throw brokenOff(err);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Every message of a whole answer, JSON or SSE, as JSON texts; SSE is read until `until` says
 * the last one needed arrived (the stream is then released) or the stream ends.
 */
export async function collectMessages(res: UpstreamResponse, until: (message: Record<string, unknown>) => boolean = () => false): Promise<string[]> {
  if (res.body === null) return [];
  if (!isSse(res)) {
    const text = await readText(res.body);
    try {
      return splitJson(text);
    } catch {
      throw new GatewayError('MCPGW_ERR_UPSTREAM_PROTOCOL', `HTTP ${res.status} without a JSON-RPC body`);
    }
  }
  const body = res.body;
  return new Promise<string[]>((resolve, reject) => {
    const out: string[] = [];
    let done = false;
    readSseEvents(
      body,
      (e) => {
        if (done || !e.data) return;
        out.push(e.data);
        let message: unknown;
        try {
          message = JSON.parse(e.data);
        } catch {
          return;
        }
        if (message && typeof message === 'object' && until(message as Record<string, unknown>)) {
          done = true;
          discard(body);
          resolve(out);
        }
      },
      (err) => {
        if (done) return;
        done = true;
        if (err && out.length === 0) reject(new GatewayError('MCPGW_ERR_UPSTREAM_UNAVAILABLE', err.message, { cause: err }));
        else resolve(out);
      },
    );
  });
}

/** Answers a message with this id (a response, not a request)? */
export function answers(message: Record<string, unknown>, id: unknown): boolean {
  return message.method === undefined && 'id' in message && idKey(message.id) === idKey(id);
}
