/** MCP protocol revisions the gateway speaks on its front door. */
export const LEGACY_REVISION = '2024-11-05';
export const SESSION_REVISIONS = ['2025-03-26', '2025-06-18', '2025-11-25'] as const;
export const STATELESS_REVISION = '2026-07-28';

/** Per the spec, a request without MCP-Protocol-Version is taken as 2025-03-26. */
export const DEFAULT_SESSION_REVISION = '2025-03-26';

// 2024-11-05 may be negotiated over Streamable HTTP by an old server; the header is then accepted.
const ACCEPTED_ON_SESSIONS = new Set<string>([LEGACY_REVISION, ...SESSION_REVISIONS]);

export function isSessionRevision(version: string): boolean {
  return ACCEPTED_ON_SESSIONS.has(version);
}

/** 2025-11-25 added the priming event (an id and empty data before anything else on a stream). */
export function primes(version: string): boolean {
  return version >= '2025-11-25';
}

/** JSON-RPC batches exist only in 2025-03-26 (and 2024-11-05); later revisions removed them. */
export function allowsBatch(version: string): boolean {
  return version === '2025-03-26' || version === LEGACY_REVISION;
}
