import { ConfigError } from '../errors.ts';
import { ambiguousMembers } from '../protocol/names.ts';
import type { ServerConfig } from './types.ts';

/**
 * compose: a virtual server's members are other servers of the same file, with upstreams of
 * their own (no virtual server inside another), and names that read back one way only.
 */
export function checkComposition(servers: Readonly<Record<string, ServerConfig>>): void {
  for (const [name, server] of Object.entries(servers)) {
    if (!server.compose) continue;
    const at = `servers.${name}.compose`;
    for (const member of server.compose) {
      const target = servers[member];
      if (member === name) throw new ConfigError(`config key ${at} names the server itself`);
      if (!target) throw new ConfigError(`config key ${at} names "${member}", which is not a server in servers`);
      if (target.compose) throw new ConfigError(`config key ${at} names "${member}", itself a virtual server; compose plain servers only`);
    }
    const ambiguous = ambiguousMembers(server.compose);
    if (ambiguous.length > 0) {
      const [a, b] = ambiguous[0]!;
      throw new ConfigError(`config key ${at}: the names of members "${a}" and "${b}" would collide once prefixed (${a}__… / ${b}__…); rename one`);
    }
  }
}
