import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createParser } from 'eventsource-parser';
import { MAX_ID_CHARS, SseEventReader } from '../../src/protocol/sse.ts';

type Seen = (string | number)[];

/** What the hub's reader reports for `chunks`. */
function read(chunks: Buffer[], max?: number): { seen: Seen; ok: boolean } {
  const seen: Seen = [];
  const reader = new SseEventReader({ sseEvent: (id, data) => seen.push(`${id}|${data}`), sseRetry: (ms) => seen.push(ms) }, max);
  let ok = true;
  for (const c of chunks) ok = reader.push(c) && ok;
  return { seen, ok };
}

/** What eventsource-parser (the reader the hub used before) reports for the same bytes. */
function oracle(bytes: Buffer): Seen {
  const seen: Seen = [];
  const parser = createParser({ onEvent: (e) => seen.push(`${e.id ?? ''}|${e.data}`), onRetry: (ms) => seen.push(ms) });
  parser.feed(bytes.toString('utf8'));
  return seen;
}

const STREAMS = [
  'data: {"a":1}\n\n',
  'id: u1\ndata: {"a":1}\n\nid: u2\ndata: \n\n',
  'data: one\ndata: two\n\n',
  'id: p\nretry: 1500\ndata:\n\n',
  ': keep-alive\n\nevent: message\ndata: x\n\n',
  'data: crlf\r\n\r\nid: 7\r\ndata: y\r\n\r\n',
  'data: cr\r\rid: 8\rdata: z\r\rdata: crlf split\r\n\r\n',
  'id: only an id, no data\n\ndata: after\n\n',
  'id: has\u0000nul\ndata: kept without it\n\n',
  'retry: soon\nretry: 20\ndata\n\n',
  'data:no space\ndata:  two spaces\n\n',
  'data: é ü 漢字 🎉\n\ndata: ok\n\n',
  'unknown: field\ndata: v\n\ndata: no end yet',
];

describe('SseEventReader', () => {
  it('reads what eventsource-parser reads, whatever the chunking (every split of every stream, in bytes)', () => {
    for (const text of STREAMS) {
      const bytes = Buffer.from(text, 'utf8');
      const want = oracle(bytes);
      assert.deepEqual(read([bytes]).seen, want, JSON.stringify(text));
      for (let i = 1; i < bytes.length; i++) {
        for (const j of [i + 1, i + 3, bytes.length]) {
          const chunks = [bytes.subarray(0, i), bytes.subarray(i, Math.min(j, bytes.length)), bytes.subarray(Math.min(j, bytes.length))];
          assert.deepEqual(read(chunks).seen, want, `${JSON.stringify(text)} split at ${i}, ${j}`);
        }
      }
      // One byte at a time.
      assert.deepEqual(read([...bytes].map((b) => Buffer.from([b]))).seen, want, `${JSON.stringify(text)} byte by byte`);
    }
  });

  it('a CR ends its line at once (eventsource-parser waited for the next chunk to see it was no CRLF)', () => {
    assert.deepEqual(read([Buffer.from('data: a\r\r')]).seen, ['|a']);
    assert.deepEqual(read([Buffer.from('data: a\r'), Buffer.from('\n\r'), Buffer.from('\ndata: b\r\n\r\n')]).seen, ['|a', '|b']);
  });

  it('drops a BOM that starts the stream (as the SSE standard says; eventsource-parser looks for it in the wrong form)', () => {
    const bytes = Buffer.from('\ufeffdata: after a BOM\n\n', 'utf8');
    assert.deepEqual(read([bytes]).seen, ['|after a BOM']);
    assert.deepEqual(read([bytes.subarray(0, 2), bytes.subarray(2)]).seen, ['|after a BOM']);
  });

  it('is false once the event under way passes the limit (a line that never ends, or data lines without a blank one)', () => {
    assert.equal(read([Buffer.from('data: 12345')], 10).ok, false);
    assert.equal(read([Buffer.from('data: 1234\ndata: 5678\ndata: 9'), Buffer.from('0\n')], 10).ok, false);
    const fine = read([Buffer.from('data: 12345678\n\ndata: 12345678\n\n')], 10);
    assert.equal(fine.ok, true);
    assert.deepEqual(fine.seen, ['|12345678', '|12345678']);
  });

  it('ignores an id longer than MAX_ID_CHARS (it is logged with every event after it: one long id would make each small event a long append)', () => {
    const long = 'i'.repeat(MAX_ID_CHARS + 1);
    assert.deepEqual(read([Buffer.from(`id: u1\ndata: a\n\nid: ${long}\ndata: b\n\nid: ${'j'.repeat(MAX_ID_CHARS)}\ndata: c\n\n`)]).seen, ['u1|a', '|b', `${'j'.repeat(MAX_ID_CHARS)}|c`]);
  });

  it('reads a chunk of many lines without a colon in linear time (each line looked for its colon to the chunk\'s end: quadratic)', () => {
    // Counted, not timed: the characters String#indexOf passes over, in all, to read the chunk.
    const indexOf = String.prototype.indexOf;
    let scanned = 0;
    String.prototype.indexOf = function (this: string, search: string, from?: number): number {
      const at = indexOf.call(this, search, from);
      scanned += (at === -1 ? this.length : at) - (from ?? 0);
      return at;
    };
    const chunk = Buffer.from('x\n'.repeat(20_000));
    try {
      read([chunk]);
    } finally {
      String.prototype.indexOf = indexOf;
    }
    assert.ok(scanned <= 4 * chunk.length, `${scanned} characters searched for a chunk of ${chunk.length}`);
  });
});
