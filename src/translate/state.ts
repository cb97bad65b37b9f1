import type { KeyObject } from 'node:crypto';
import { openArray, sealArray, sealKey } from '../session/seal.ts';

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

const PREFIX = 'gw1.';
/** No header: the prefix names the format. */
const NO_HEADER = Buffer.alloc(0);

export class StateSealer {
  readonly #key: KeyObject;

  constructor(secret: string | Buffer) {
    this.#key = sealKey(secret, 'request-state v1');
  }

  seal(state: ContinuationState): string {
    const values = [state.call, state.node, state.principal, state.server, state.method, state.name, state.expires];
    return PREFIX + sealArray(this.#key, NO_HEADER, values).toString('base64url');
  }

  /** The state, or undefined for anything this key did not seal (or was changed). Never throws. */
  open(token: unknown): ContinuationState | undefined {
    if (typeof token !== 'string' || !token.startsWith(PREFIX) || token.length > 2048) return undefined;
    const a = openArray(this.#key, NO_HEADER, Buffer.from(token.slice(PREFIX.length), 'base64url'), 7);
    if (!a) return undefined;
    return { call: String(a[0]), node: String(a[1]), principal: String(a[2]), server: String(a[3]), method: String(a[4]), name: String(a[5]), expires: Number(a[6]) };
  }
}
