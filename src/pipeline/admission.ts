/**
 * Why a request may reach an upstream: every `ClientRequest` (src/upstream/types.ts) carries an
 * `Admission`. A caller's messages carry `Admitted`, which only the limit stage mints
 * (src/pipeline/limit.ts): a door that skipped it has nothing to build its upstream request with.
 * What the gateway writes on its own — cancellations, discovery probes, the initialize of a pooled
 * session, a virtual server's fan-out — carries `GATEWAY_ORIGINATED`, named so a review sees it.
 */
declare const admitted: unique symbol;

/** Proof that a caller's request passed the limit stage; minted there (src/pipeline/limit.ts) and nowhere else. */
export type Admitted = { readonly [admitted]: true };

declare const originated: unique symbol;

/** The token of a message the gateway wrote for itself, not for a caller's request. */
export type GatewayOriginated = { readonly [originated]: true };

export const GATEWAY_ORIGINATED: GatewayOriginated = Object.freeze({}) as GatewayOriginated;

export type Admission = Admitted | GatewayOriginated;
