import type { Readable } from 'node:stream';
import type { ServerPolicy } from '../config/types.ts';
import type { Envelope } from '../protocol/jsonrpc.ts';
import type { UpstreamResponse } from '../upstream/types.ts';
import { LISTS, rewriteAnswer, rewriteRequest, rewriteStream, type AnswerPlan, type ListSpec } from '../upstream/rewrite.ts';
import { mayUse } from './policy.ts';
import type { Principal } from './principal.ts';

/**
 * Per-item policy on the wire. Requests that name a tool, resource or prompt the caller may not
 * use are sent upstream with that name swapped for one that cannot exist, and the name is put
 * back in the answer: the caller gets exactly the upstream's own "unknown" answer, whatever form
 * it takes, and nothing hidden runs. List results are parsed and re-serialized without the items
 * the caller may not use — only for list methods; every other byte passes through untouched
 * (the mechanics: src/upstream/rewrite.ts). Names are the published ones: curation
 * (src/curation/) sits below, between the gateway and the upstream.
 */

export interface GuardPlan extends AnswerPlan {
  /** The messages to send upstream (the caller's unless a hidden name was swapped). */
  readonly messages: readonly Envelope[];
  /** Names the caller asked for but may not use (for the audit log). */
  readonly hidden: readonly string[];
  readonly policy: ServerPolicy;
  readonly principal: Principal;
}

/** undefined when the request needs no guarding: the hot path stays as it was. */
export function guardRequest(policy: ServerPolicy, principal: Principal, messages: readonly Envelope[]): GuardPlan | undefined {
  const r = rewriteRequest(messages, (item) => (mayUse(policy, item.kind, item.name, principal) ? item.name : undefined));
  return r && plan(r.lists, r.masks, policy, principal, r.messages, r.hidden);
}

function plan(lists: ReadonlyMap<string, ListSpec>, masks: readonly (readonly [string, string])[], policy: ServerPolicy, principal: Principal, messages: readonly Envelope[], hidden: readonly string[]): GuardPlan {
  return {
    messages,
    lists,
    masks,
    hidden,
    policy,
    principal,
    items(spec, items) {
      const kept = items.filter((item) => {
        const name = (item as Record<string, unknown> | null)?.[spec.key];
        return typeof name === 'string' && mayUse(policy, spec.kind, name, principal);
      });
      return kept.length === items.length ? undefined : kept;
    },
  };
}

/** The part of a plan a stream needs once its answer has to be read from the upstream again (StreamInfo.guard). */
export function serializeGuard(plan: GuardPlan): string {
  return JSON.stringify({ lists: [...plan.lists].map(([id, spec]) => [id, spec.field]), masks: plan.masks });
}

/**
 * The plan again, for the caller resuming the stream (sessions are bound to their principal, so
 * it is the caller who asked); undefined when there is nothing to filter for this caller.
 */
export function restoreGuard(serialized: string, policy: ServerPolicy | undefined, principal: Principal | undefined): GuardPlan | undefined {
  if (!policy?.filtersItems || !principal) return undefined;
  const { lists, masks } = JSON.parse(serialized) as { lists: [string, string][]; masks: [string, string][] };
  const byField = new Map(Object.values(LISTS).map((spec) => [spec.field, spec]));
  const restored = new Map<string, ListSpec>();
  for (const [id, field] of lists) {
    const spec = byField.get(field);
    if (spec) restored.set(id, spec);
  }
  return plan(restored, masks, policy, principal, [], []);
}

/** Applies a plan to an SSE stream read from the upstream again (a resumed answer). */
export function guardStream(body: Readable, plan: GuardPlan): Promise<Readable> {
  return rewriteStream(body, plan);
}

/** Applies the plan to the upstream's answer: JSON is buffered and rewritten, SSE rewritten per event. */
export function guardResponse(res: UpstreamResponse, plan: GuardPlan): Promise<UpstreamResponse> {
  return rewriteAnswer(res, plan);
}
