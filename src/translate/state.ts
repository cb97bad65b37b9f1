import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Sealed `requestState` for input_required results the gateway makes itself: the client echoes it
 * back and may not read or change it (AES-256-GCM, a key derived from the session secret, so
 * every replica can open what another sealed).
 */
export interface ContinuationState {
  /** The parked call (on the replica named by `node`). */
  readonly call: string;
  readonly node: string;
  readonly principal: string;
  readonly server: string;
  /** The method and Mcp-Name of the original request: a retry must be the same request. */
  readonly method: string;
  readonly name: string;
  /** Expiry, ms since the epoch. */
  readonly expires: number;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
const PREFIX = 'gw1.';

export class StateSealer {
  readonly #key: Buffer;

  constructor(secret: string | Buffer) {
    this.#key = Buffer.from(hkdfSync('sha256', secret, 'mcp-gateway', 'request-state v1', 32));
  }

  seal(state: ContinuationState): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    const plain = Buffer.from(JSON.stringify([state.call, state.node, state.principal, state.server, state.method, state.name, state.expires]));
    return PREFIX + Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]).toString('base64url');
  }

  /** The state, or undefined for anything this key did not seal (or was changed). Never throws. */
  open(token: unknown): ContinuationState | undefined {
    if (typeof token !== 'string' || !token.startsWith(PREFIX) || token.length > 2048) return undefined;
    const body = Buffer.from(token.slice(PREFIX.length), 'base64url');
    if (body.length < IV_BYTES + TAG_BYTES + 2) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, body.subarray(0, IV_BYTES));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)), decipher.final()]);
      const a = JSON.parse(plain.toString('utf8')) as unknown[];
      if (!Array.isArray(a) || a.length !== 7) return undefined;
      return { call: String(a[0]), node: String(a[1]), principal: String(a[2]), server: String(a[3]), method: String(a[4]), name: String(a[5]), expires: Number(a[6]) };
    } catch {
      return undefined;
    }
  }
}
