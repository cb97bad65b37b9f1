/**
 * The contract between handle() (src/http/mcp.ts), which every MCP route runs, and a door's step
 * (onPost, onStatelessPost, the 2024-11-05 steps, …): the step gets the checked caller and
 * answers with an Outcome, which handle() turns into the HTTP response.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { Reopen, StreamHub } from '../events/hub.ts';
import type { UpstreamResponse } from '../upstream/types.ts';
import type { Call } from './accounting.ts';
import type { GatewayContext } from './context.ts';
import type { McpRequest } from './request.ts';

/** What a step produced: an upstream answer to send (SSE goes through the event log), or a resumption. */
export type Outcome =
  | { readonly res: UpstreamResponse; readonly session?: string; readonly stream?: StreamContext }
  | { readonly resume: Awaited<ReturnType<StreamHub['prepareResume']>>; readonly reopen: Reopen }
  | { readonly adopt: string; readonly priming: boolean }
  // legacy: the step writes the response itself (the 2024-11-05 session stream).
  | { readonly write: (res: ServerResponse) => void };

export interface StreamContext {
  readonly sessionId: string;
  readonly kind: 'post' | 'get';
  readonly requests: string;
  readonly priming: boolean;
  readonly reopen: Reopen;
  /** A quick single answer may go out as JSON: the client accepts application/json. */
  readonly json?: boolean;
  /** auth: the answer's filter, kept with the stream for whoever reads its upstream again. */
  readonly guard?: string;
}

export type Step = (gw: GatewayContext, request: McpRequest, call: Call, reply: FastifyReply) => Promise<Outcome>;
