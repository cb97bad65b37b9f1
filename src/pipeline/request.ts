/**
 * The request value every front door builds for the pipeline's stages: which server, on whose
 * behalf, which messages, through which door. It carries nothing of HTTP: a stage reads this and
 * the server's config, never a Fastify request.
 */
import type { Envelope } from '../protocol/jsonrpc.ts';

/**
 * The front doors: `session` (2025-03-26 … 2025-11-25 Streamable HTTP), `stateless` (2026-07-28,
 * forwarded or translated), `legacy` (2024-11-05 HTTP+SSE).
 */
export type Door = 'session' | 'stateless' | 'legacy';

export interface PipelineRequest {
  readonly server: string;
  /** The authenticated caller's id; undefined when auth is off. */
  readonly principal: string | undefined;
  /** Whom per-caller caps count it against (the principal, or the address when auth is off). */
  readonly holder: string;
  /** The checked messages of the body (none for GET and DELETE). */
  readonly messages: readonly Envelope[];
  readonly door: Door;
}
