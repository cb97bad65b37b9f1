import type { X509Certificate } from 'node:crypto';
import type { AuthConfig } from '../config/types.ts';
import { GatewayError } from '../errors.ts';
import { principalId, type Principal } from './principal.ts';

/**
 * The principal a verified client certificate names (auth.mode mtls): its CN, DN or SHA-256
 * fingerprint as `auth.clientCerts.subject` says, mapped to a name, scopes and claims when
 * `auth.clientCerts.principals` lists it. A GatewayError when it names none: no usable subject
 * (401), or a subject a non-empty `principals` does not list (403).
 */
export function certificatePrincipal(cert: X509Certificate, clientCerts: AuthConfig['clientCerts']): Principal | GatewayError {
  // Node escapes `,`, `+`, `\` and control characters inside values (RFC 2253): one line per
  // RDN, so the lines joined by `,` spell one subject only.
  const dn = cert.subject.split('\n').filter(Boolean).reverse().join(',');
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? '';
  const fingerprint = cert.fingerprint256.replace(/:/g, '').toLowerCase();
  const subject = clientCerts.subject === 'cn' ? cn : clientCerts.subject === 'dn' ? dn : fingerprint;
  // Own keys only: a CN like `constructor` or `toString` is not in the list because Object.prototype is.
  const mapped = Object.hasOwn(clientCerts.principals, subject) ? clientCerts.principals[subject] : undefined;
  if (!mapped && Object.keys(clientCerts.principals).length > 0) return new GatewayError('MCPGW_ERR_FORBIDDEN', 'the certificate subject is not mapped to a principal');
  if (!subject) return new GatewayError('MCPGW_ERR_UNAUTHORIZED', 'the certificate has no usable subject');
  const name = mapped?.name ?? subject;
  const claims: Record<string, unknown> = { ...mapped?.claims, sub: name, cn, dn, fingerprint };
  return { id: principalId('cert', 'mtls', name), kind: 'cert', issuer: 'mtls', subject: name, scopes: new Set(mapped?.scopes ?? []), claims };
}
