import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/authenticator.ts';
import type { GatewayConfig } from '../config/types.ts';
import type { StreamHub } from '../events/hub.ts';
import type { AuditLog } from '../ops/audit.ts';
import type { Metrics } from '../ops/metrics.ts';
import type { RouteStore } from '../session/routes.ts';
import type { Pipeline } from '../pipeline/pipeline.ts';
import type { SessionStore } from '../session/store.ts';
import type { SessionClaims, SessionSealer } from '../session/token.ts';
import type { Translator } from '../translate/translator.ts';
import type { Upstream } from '../upstream/types.ts';
import type { OriginPolicy } from './origin.ts';
import type { Tracing } from '../ops/telemetry.ts';

/** What the HTTP layer needs of the running gateway. */
export interface GatewayContext {
  readonly config: GatewayConfig;
  readonly servers: ReadonlyMap<string, Upstream>;
  readonly sealer: SessionSealer;
  readonly sessions: SessionStore;
  readonly origins: OriginPolicy;
  readonly metrics: Metrics;
  readonly hub: StreamHub;
  readonly log: Logger;
  /** Checks callers; undefined when auth.mode is none (nothing to do on the hot path). */
  readonly auth: Authenticator | undefined;
  /** One line per MCP request; undefined unless audit.enabled. */
  readonly audit: AuditLog | undefined;
  /** legacy: upstream placements of 2024-11-05 sessions (src/session/routes.ts). */
  readonly legacyRoutes: RouteStore;
  /**
   * The chain every door's request runs to its upstream: rate limits, result cache, breaker
   * fast-fail, time limit, retries (src/pipeline/pipeline.ts).
   */
  readonly pipeline: Pipeline;
  /** Translation between protocol eras: what it holds on this replica (src/translate/translator.ts). */
  readonly translator: Translator;
  /** Ends a session on every replica (deny-list) and releases what it holds here. */
  endSession(claims: SessionClaims): Promise<void>;
  /**
   * Counts a response until it closes; `stream` marks a standalone GET stream, which a draining
   * replica ends at once (the client resumes elsewhere) instead of waiting for it.
   */
  track(res: ServerResponse, kind: 'request' | 'stream', closed?: () => void): void;
  /** Readiness of this replica: empty when ready, else the reasons (never one server's health). */
  notReady(): string[];
  /** traces: OpenTelemetry (src/ops/telemetry.ts); undefined when off. */
  readonly tracing?: Tracing | undefined;
  /** SIGTERM received: the replica drains (Gateway.shutdown). */
  readonly shuttingDown: boolean;
}
