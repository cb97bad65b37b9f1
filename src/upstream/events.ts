import { EventEmitter } from 'node:events';

/**
 * What the upstream side reports; core modules never log, `ops/` listens and logs or counts.
 * `replica` is always the replica's public name (ReplicaState.key), never its URL.
 */
export interface UpstreamEventMap {
  eject: [{ server: string; replica: string; reason: string }];
  restore: [{ server: string; replica: string }];
  spawn: [{ server: string; replica: string; pid: number | undefined; session: string }];
  exit: [{ server: string; replica: string; pid: number | undefined; session: string; code: number | null; signal: string | null; reason: string }];
  stderr: [{ server: string; replica: string; pid: number | undefined; line: string }];
  protocolError: [{ server: string; replica: string; detail: string }];
  /** compose: names a virtual server dropped because another member's item already has them. */
  collision: [{ server: string; kind: string; names: readonly string[] }];
  /** compose: what a virtual server publishes, as its discovery of the members found it. */
  composed: [{ server: string; items: number; shortened: number; collisions: number }];
  /** compose: its discovery failed (it is tried again, for the next caller when it needs one). */
  composeFailed: [{ server: string; reason: string }];
}

export class UpstreamEvents extends EventEmitter<UpstreamEventMap> {}
