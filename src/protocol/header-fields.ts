/**
 * Building HTTP header field values (RFC 9110 §5.6). Whatever goes into a header the gateway
 * writes passes through here when it is not a constant: a value that breaks out of its quotes
 * would add parameters (`error="…"`) or, with CR LF, whole header lines.
 */

/** What a field value may hold at all: HTAB, SP, visible ASCII and obs-text (RFC 9110 §5.5). */
const FIELD_CHARS = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * `value` as a quoted-string (RFC 9110 §5.6.4): `"` and `\` escaped; a control character cannot
 * be quoted at all and throws (no caller should have let one through).
 */
export function quotedString(value: string): string {
  if (!FIELD_CHARS.test(value)) throw new TypeError('a header value cannot carry control characters');
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}
