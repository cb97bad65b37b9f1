import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomFillSync, type KeyObject } from 'node:crypto';

/**
 * AES-256-GCM over a JSON array, under a key derived from the shared secret: what the gateway
 * hands clients to echo back (session ids, `requestState`), opaque and tamper-evident to them,
 * and readable by every replica.
 */

const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * A 256-bit key for one use of the secret (`purpose` keeps the uses apart). A KeyObject, made
 * once: given the key's bytes instead, every cipher would build one of its own (3× the cost of
 * sealing a session id; docs/performance.md, "a session's start and end").
 */
export function sealKey(secret: string | Buffer, purpose: string): KeyObject {
  return createSecretKey(Buffer.from(hkdfSync('sha256', secret, 'mcp-gateway', purpose, 32)));
}

/** `header ‖ iv ‖ ciphertext ‖ tag`; the header is authenticated (AAD), not encrypted. */
export function sealArray(key: KeyObject, header: Buffer, values: readonly unknown[]): Buffer {
  const iv = randomBytesNow(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(header);
  return Buffer.concat([header, iv, cipher.update(JSON.stringify(values), 'utf8'), cipher.final(), cipher.getAuthTag()]);
}

/** The `length` values `sealArray` sealed with this key and header; undefined for anything else. Never throws. */
export function openArray(key: KeyObject, header: Buffer, body: Buffer, length: number): unknown[] | undefined {
  const at = header.length;
  if (body.length < at + IV_BYTES + TAG_BYTES + 2 || !body.subarray(0, at).equals(header)) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(at, at + IV_BYTES));
    decipher.setAAD(header);
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    const plain = Buffer.concat([decipher.update(body.subarray(at + IV_BYTES, body.length - TAG_BYTES)), decipher.final()]);
    const values = JSON.parse(plain.toString('utf8')) as unknown;
    return Array.isArray(values) && values.length === length ? values : undefined;
  } catch {
    return undefined;
  }
}

/** `bytes` random bytes as base64url: a fresh id (a session's, a stream's). */
export function randomId(bytes: number): string {
  return randomBytesNow(bytes).toString('base64url');
}

/** Random bytes drawn from the CSPRNG this many at a time: one OpenSSL call (and its fork check, a getpid) per 4 KiB, not per token. */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let poolAt = POOL_BYTES;

/**
 * `n` (≤ POOL_BYTES) bytes from the CSPRNG, each handed out once. A view of the pool, valid until
 * the next call: to be copied at once (a cipher copies its IV, `Buffer.concat` and `toString` copy).
 */
function randomBytesNow(n: number): Buffer {
  if (poolAt + n > POOL_BYTES) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const bytes = pool.subarray(poolAt, poolAt + n);
  poolAt += n;
  return bytes;
}
