import type { Envelope } from './jsonrpc.ts';

/**
 * What the gateway writes to an upstream: messages serialized from the values it parsed and
 * checked, never the caller's bytes. A caller's body can mean one thing to the gateway's JSON
 * parser and another to an upstream's (a bare CR is JSON whitespace but ends a line for Python's,
 * Java's and .NET's line readers; duplicate keys resolve differently across parsers), so the one
 * meaning the gateway checked is the one it writes, on one line.
 */

declare const written: unique symbol;

/** Bytes the gateway wrote itself with wireBody(); a caller's raw body does not have this type. */
export type WireBody = Buffer & { readonly [written]: true };

/**
 * Line breaks JSON.stringify leaves raw inside strings but some line readers split on (NEL, LINE
 * and PARAGRAPH SEPARATOR: Python's str.splitlines, for one). Escaped, they are the same string.
 */
const LINE_BREAK = /[\u0085\u2028\u2029]/;
const LINE_BREAKS = /[\u0085\u2028\u2029]/g;

/** One message as one line of JSON: no CR, no LF, no other line separator anywhere in it. */
export function wireText(message: Readonly<Record<string, unknown>> | readonly unknown[]): string {
  const text = JSON.stringify(message);
  return LINE_BREAK.test(text) ? text.replace(LINE_BREAKS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : text;
}

/** The body for these messages: one message, or a batch (an array, even of one). */
export function wireBody(messages: readonly Envelope[], batch: boolean): WireBody {
  const text = batch ? wireText(messages.map((m) => m.message)) : wireText(messages[0]!.message);
  return Buffer.from(text) as WireBody;
}

/** Each message of a request on a line of its own, for channels that take one message at a time (stdio, 2024-11-05 SSE). */
export function wireLines(messages: readonly Envelope[]): string[] {
  return messages.map((m) => wireText(m.message));
}
