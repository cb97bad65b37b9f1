import type { Upstream, UpstreamHealth } from '../upstream/types.ts';

/**
 * Health per published server. It never decides whether this gateway replica is ready (one broken
 * upstream would take every replica out of its Service): it is shown by `GET /readyz?verbose`,
 * exported as `mcp_server_up` and `mcp_upstream_healthy_replicas`, and logged when it changes.
 */

/** One server as the per-server view shows it. */
export interface ServerStatus {
  readonly state: UpstreamHealth;
  readonly kind: Upstream['kind'];
  /** Upstream replicas configured (a virtual server has none of its own: its members report theirs). */
  readonly replicas: number;
  /** Replicas that can take a new session now: not ejected, and none while the server is not up. */
  readonly healthyReplicas: number;
}

export function serverStatus(upstream: Upstream): ServerStatus {
  const state = upstream.health();
  const replicas = upstream.replicaStates();
  return { state, kind: upstream.kind, replicas: replicas.length, healthyReplicas: state === 'up' ? replicas.filter((r) => !r.ejected).length : 0 };
}

/** A server whose health changed since the last look. */
export interface HealthChange {
  readonly server: string;
  readonly state: UpstreamHealth;
  readonly previous: UpstreamHealth;
}

/**
 * Remembers each server's health and says what changed, for the `server down` and `server up` log
 * lines. Health also changes with time alone (an ejection runs out), so it is looked at on a timer
 * as well as on upstream events. A server not seen before counts as having been up.
 */
export class HealthWatch {
  readonly #servers: ReadonlyMap<string, Upstream>;
  #last = new Map<string, UpstreamHealth>();

  constructor(servers: ReadonlyMap<string, Upstream>) {
    this.#servers = servers;
  }

  changes(): HealthChange[] {
    const changes: HealthChange[] = [];
    const now = new Map<string, UpstreamHealth>();
    for (const [server, upstream] of this.#servers) {
      const state = upstream.health();
      const previous = this.#last.get(server) ?? 'up';
      if (state !== previous) changes.push({ server, state, previous });
      now.set(server, state);
    }
    this.#last = now;
    return changes;
  }
}
