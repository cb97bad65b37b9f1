import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SessionSealer, type SessionClaims } from '../../src/session/token.ts';
import { EndedSet } from '../../src/session/store.ts';

const claims: SessionClaims = {
  id: SessionSealer.newId(),
  server: 'api',
  upstream: 'http://10.0.0.1:3001/mcp',
  upstreamSession: '6f1c2a52-2a7e-4a6b-9a35-1b1f0f3b9d11',
  node: '',
  principal: '',
  protocolVersion: '2025-11-25',
  issuedAt: 1_796_000_000,
};

it('round-trips claims through a sealed token another instance with the same key opens', () => {
  const token = new SessionSealer('k'.repeat(32)).seal(claims);
  assert.match(token, /^[A-Za-z0-9_-]+$/, 'visible ASCII only, as Mcp-Session-Id requires');
  assert.deepEqual(new SessionSealer('k'.repeat(32)).open(token), claims);
  assert.ok(!token.includes('10.0.0.1') && !Buffer.from(token, 'base64url').toString('latin1').includes('10.0.0.1'), 'routing facts are encrypted');
});

it('rejects tokens sealed with another key, tampered, truncated or garbage', () => {
  const sealer = new SessionSealer('k'.repeat(32));
  const token = sealer.seal(claims);
  const other = new SessionSealer('z'.repeat(32));
  assert.equal(other.open(token), undefined);
  const bytes = Buffer.from(token, 'base64url');
  for (const i of [0, 5, 20, bytes.length - 1]) {
    const tampered = Buffer.from(bytes);
    tampered[i]! ^= 1;
    assert.equal(new SessionSealer('k'.repeat(32)).open(tampered.toString('base64url')), undefined, `byte ${i} flipped`);
  }
  for (const junk of ['', 'abc', token.slice(0, 30), 'not base64!', 'A'.repeat(5000), token + '%']) {
    assert.equal(new SessionSealer('k'.repeat(32)).open(junk), undefined, junk.slice(0, 20));
  }
});

it('gives each initialize a distinct id and token', () => {
  const sealer = new SessionSealer('k'.repeat(32));
  const ids = new Set(Array.from({ length: 1000 }, () => SessionSealer.newId()));
  assert.equal(ids.size, 1000);
  assert.notEqual(sealer.seal(claims), sealer.seal(claims), 'random IV per token');
  // Ids and IVs come from a pool of random bytes refilled every 4 KiB: across refills, every
  // token is distinct and opens (no IV handed out twice, none changed under a cipher).
  const tokens = Array.from({ length: 1000 }, () => sealer.seal(claims));
  assert.equal(new Set(tokens).size, 1000);
  assert.equal(new Set(tokens.map((t) => Buffer.from(t, 'base64url').subarray(1, 13).toString('hex'))).size, 1000, 'a distinct IV each');
  const fresh = new SessionSealer('k'.repeat(32));
  for (const t of tokens) assert.deepEqual(fresh.open(t), claims);
});

it('remembers at most its cap of ended sessions, forgetting the oldest ending first (a DELETE loop cannot grow it for a day)', () => {
  const ended = new EndedSet(1_000);
  const day = Date.now() + 86_400_000;
  for (let i = 0; i < 5_000; i++) ended.add(`s${i}`, day);
  assert.equal(ended.size, 1_000);
  assert.equal(ended.has('s0'), false, 'the oldest ending is forgotten');
  assert.equal(ended.has('s4999'), true, 'the newest is kept');
});
