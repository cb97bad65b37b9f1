import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { it } from 'node:test';
import { ClientWriter } from '../../src/events/writer.ts';

/** A real HTTP server whose one response the test drives, and a raw client socket. */
async function harness() {
  let response!: ServerResponse;
  const ready = new Promise<void>((resolve) => {
    server.on('request', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      response = res;
      resolve();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  socket.write('GET / HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n');
  await ready;
  return { response: () => response, socket };
}
const server = createServer();

it('cuts a reader that leaves more than maxBuffer unread from earlier turns, without growing memory further', async () => {
  const { response, socket } = await harness();
  try {
    socket.pause(); // a client that stops reading
    const writer = new ClientWriter(response(), 'S', 0, 64 * 1024);
    const line = 'x'.repeat(1_000);
    let written = 0;
    for (let seq = 1; seq <= 100_000 && !writer.closed; seq++) {
      writer.write({ seq, data: `{"pad":"${line}"}`, upstreamId: '', hidden: false, end: false });
      written++;
      if (seq % 10 === 0) await sleep(1); // a turn of the loop per 10 events (~10 KB)
    }
    assert.equal(writer.closed, true, 'the connection was cut');
    assert.ok(written < 100_000, `cut after ${written} events`);
    // At most maxBuffer left from earlier turns, plus what one turn wrote.
    assert.ok(response().writableLength <= 64 * 1024 + 10 * 1_020 + 2_000, `buffered ${response().writableLength} bytes`);
  } finally {
    socket.destroy();
    server.close();
    server.removeAllListeners('request');
  }
});

it('does not cut a reader that keeps up, however large one burst is', async () => {
  const { response, socket } = await harness();
  try {
    let read = 0;
    socket.on('data', (c: Buffer) => (read += c.length));
    const writer = new ClientWriter(response(), 'S', 0, 16 * 1024);
    const line = 'x'.repeat(1_000);
    // 200 KB at once: far past maxBuffer in one turn.
    for (let seq = 1; seq <= 200; seq++) writer.write({ seq, data: `{"pad":"${line}"}`, upstreamId: '', hidden: false, end: false });
    for (let i = 0; i < 200 && read < 200_000; i++) await sleep(5);
    writer.write({ seq: 201, data: '{"last":true}', upstreamId: '', hidden: false, end: false });
    assert.equal(writer.closed, false, 'still open');
    assert.ok(read >= 200_000, `the client read ${read} bytes`);
  } finally {
    socket.destroy();
    server.close();
    server.removeAllListeners('request');
  }
});

it('writes each seq once, in order, holds live events during a replay, and sends keep-alive comments when idle', async () => {
  const { response, socket } = await harness();
  const chunks: string[] = [];
  socket.setEncoding('utf8');
  socket.on('data', (c: string) => chunks.push(c));
  try {
    const writer = new ClientWriter(response(), 'S', 2, 1 << 20);
    const e = (seq: number, extra: object = {}) => ({ seq, data: `{"n":${seq}}`, upstreamId: '', hidden: false, end: false, ...extra });
    writer.write(e(1)); // at or below the client's position: skipped
    writer.write(e(2));
    writer.hold();
    writer.write(e(4)); // live, arrives while the log is read
    writer.write(e(5));
    writer.replay([e(3), e(4)]); // the log's events after the position go first
    writer.release(); // then the held live ones, minus what the replay covered
    writer.write(e(5)); // a duplicate: skipped
    writer.write(e(6, { hidden: true }));
    writer.write(e(7));
    writer.keepAlive(Date.now() + 10_000, 5_000);
    writer.write({ seq: 8, data: '', upstreamId: '', hidden: true, end: true });
    // The response ends with the last chunk (the connection itself stays open: keep-alive).
    while (!chunks.join('').includes('\r\n0\r\n\r\n')) await sleep(5);
    const body = chunks.join('');
    const ids = [...body.matchAll(/^id: (\S+)$/gm)].map((m) => m[1]);
    assert.deepEqual(ids, ['S.3', 'S.4', 'S.5', 'S.7'], 'each once, in order; hidden and old events not sent');
    assert.match(body, /: keep-alive\n\n/);
  } finally {
    socket.destroy();
    server.close();
    server.removeAllListeners('request');
  }
});

it('holds at most maxBuffer bytes of live events during a replay; what it lets go it reports, for the replay to read from the log', async () => {
  const { response, socket } = await harness();
  let read = '';
  socket.setEncoding('utf8');
  socket.on('data', (c: string) => (read += c));
  try {
    const writer = new ClientWriter(response(), 'S', 0, 16 * 1024);
    const line = 'x'.repeat(1_000);
    const e = (seq: number) => ({ seq, data: `{"pad":"${line}","n":${seq}}`, upstreamId: '', hidden: false, end: false });
    writer.hold();
    // A replay that does not catch up while the stream goes on: 10 MB of live events arrive.
    for (let seq = 1; seq <= 10_000; seq++) writer.write(e(seq));
    assert.equal(writer.heldDropped(), true, 'it let events go');
    assert.equal(writer.heldDropped(), false, 'and says so once');
    writer.release();
    writer.write(e(10_001));
    while (!read.includes('"n":10001')) await sleep(5);
    const ids = [...read.matchAll(/^id: S\.(\d+)$/gm)].map((m) => Number(m[1]));
    assert.ok(ids.length > 0 && ids.length <= 17, `only what was held last went out from memory (${ids.length} events)`);
    assert.deepEqual(ids, Array.from({ length: ids.length }, (_, i) => ids[0]! + i), 'in order');
    assert.equal(ids.at(-1), 10_001);
  } finally {
    socket.destroy();
    server.close();
    server.removeAllListeners('request');
  }
});
