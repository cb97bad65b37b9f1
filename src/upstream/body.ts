import type { Readable } from 'node:stream';

const ignore = (): void => {};

/**
 * An upstream body the gateway will not read further. undici's body emits an error when it is
 * destroyed early (RequestAbortedError) or its connection resets; with nobody listening that
 * would be an uncaught exception, so these two helpers listen first.
 */
export function discard(body: Readable): void {
  body.on('error', ignore);
  body.destroy();
}

/** Reads and drops the rest of a body, so its keep-alive connection can be reused. */
export function drain(body: Readable): void {
  body.on('error', ignore);
  body.resume();
}
