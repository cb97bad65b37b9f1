import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { before, describe, it } from 'node:test';
import { exportJWK, SignJWT, type JWTPayload } from 'jose';
import { certificatePrincipal } from '../../src/auth/certificate.ts';
import { JwtVerifier } from '../../src/auth/jwt.ts';
import type { Principal } from '../../src/auth/principal.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { AuthConfig } from '../../src/config/types.ts';
import { GatewayError } from '../../src/errors.ts';
import { AuditLog } from '../../src/ops/audit.ts';
import { createPki, type TestPki } from '../helpers/certs.ts';

/**
 * Principals are unambiguous by construction: each caller is a (kind, issuer, subject) tuple, and
 * no claim value — a separator, a marker written into `sub`, a string UTF-8 cannot carry, an
 * issuer named like the certificate marker — makes one tuple's id (or audit line) another's.
 */
const IDP = 'https://idp.example/';
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const NO_MAPPING: AuthConfig['clientCerts'] = { subject: 'cn', principals: {} };

/** A caller: the claims of a token (its `iss` one of the trusted issuers), or a certificate's CN. */
type Caller = { readonly token: JWTPayload } | { readonly cert: string };

describe('principal ids', () => {
  let verifier: JwtVerifier;
  let pki: TestPki;

  before(async () => {
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' };
    const issuers = [IDP, 'a', 'a\nb', 'mtls'].map((issuer) => ({ issuer, jwksUri: undefined, keys: { keys: [jwk] }, algorithms: ['ES256'] }));
    verifier = new JwtVerifier({ mode: 'jwt', issuers, audience: ['mcp'], clockToleranceSec: 0, jwksCacheMaxAgeMs: 60_000, jwksCooldownMs: 30_000 } as unknown as AuthConfig);
    pki = createPki();
  });

  async function principalOf(caller: Caller): Promise<Principal> {
    if ('cert' in caller) {
      const p = certificatePrincipal(new X509Certificate(pki.issue(caller.cert).cert), NO_MAPPING);
      assert.ok(!(p instanceof GatewayError), String(p));
      return p;
    }
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ iss: IDP, aud: 'mcp', iat: now, exp: now + 300, ...caller.token }).setProtectedHeader({ alg: 'ES256', kid: 'k' }).sign(privateKey);
    return verifier.verify(token, ['mcp']);
  }

  /** The `principal` of the audit line of a request by `p`. */
  function audited(p: Principal): unknown {
    let line = '';
    const audit = new AuditLog({ enabled: true, destination: 'stdout', redactKeys: [], maxParamsBytes: 100 }, { write: (l: string) => (line += l) });
    audit.record({ requestId: 'r', principal: p, server: 's', httpMethod: 'GET', messages: undefined, session: undefined, status: 200, error: undefined, hidden: undefined, latencyMs: 1 });
    return (JSON.parse(line) as { principal: unknown }).principal;
  }

  const table: [string, Caller, Caller, 'same' | 'distinct'][] = [
    ['one user, two tokens', { token: { sub: 'svc', jti: '1' } }, { token: { sub: 'svc', jti: '2' } }, 'same'],
    ['a user, and a client token (no sub) whose client_id is that sub', { token: { sub: 'svc' } }, { token: { client_id: 'svc' } }, 'distinct'],
    ['a user whose sub spells the client prefix, and that client', { token: { sub: 'client_id:svc' } }, { token: { client_id: 'svc' } }, 'distinct'],
    ['issuer and subject with a newline moved from one to the other', { token: { iss: 'a\nb', sub: 'c' } }, { token: { iss: 'a', sub: 'b\nc' } }, 'distinct'],
    ['a lone surrogate and the U+FFFD that UTF-8 writes in its place', { token: { sub: '\uD800' } }, { token: { sub: '\uFFFD' } }, 'distinct'],
    ['two lone surrogates', { token: { client_id: '\uD800' } }, { token: { client_id: '\uDFFF' } }, 'distinct'],
    ['a certificate, and a user of an issuer named "mtls"', { cert: 'alice' }, { token: { iss: 'mtls', sub: 'alice' } }, 'distinct'],
    ['a certificate, and a client of an issuer named "mtls"', { cert: 'alice' }, { token: { iss: 'mtls', client_id: 'alice' } }, 'distinct'],
  ];
  for (const [name, a, b, expected] of table) {
    it(`${name}: ${expected}`, async () => {
      const [pa, pb] = [await principalOf(a), await principalOf(b)];
      assert.match(pa.id, /^[A-Za-z0-9_-]{22}$/);
      if (expected === 'same') {
        assert.equal(pa.id, pb.id);
        assert.deepEqual(audited(pa), audited(pb));
      } else {
        assert.notEqual(pa.id, pb.id, `${JSON.stringify(a)} and ${JSON.stringify(b)} are one principal`);
        assert.notDeepEqual(audited(pa), audited(pb), 'one caller to the audit log');
      }
    });
  }

  it('names the kind of caller: a token with a sub is a user, one without a client, a certificate a cert', async () => {
    const kinds = await Promise.all([{ token: { sub: 'u', client_id: 'app' } }, { token: { client_id: 'app' } }, { cert: 'alice' }].map(principalOf));
    assert.deepEqual(
      kinds.map((p) => [p.kind, p.issuer, p.subject]),
      [
        ['user', IDP, 'u'],
        ['client', IDP, 'app'],
        ['cert', 'mtls', 'alice'],
      ],
    );
  });
});

describe('certificate principals', () => {
  let pki: TestPki;
  let clientCerts: AuthConfig['clientCerts'];

  before(() => {
    pki = createPki();
    const server = pki.issue('gateway', { server: true });
    // Parsed, as a config file is: `__proto__` is then a key like any other.
    const principals: unknown = JSON.parse('{"alice": {"name": "alice@acme"}, "__proto__": {"name": "proto"}}');
    const document = { listen: { tls: { certFile: server.certFile, keyFile: server.keyFile, clientCaFile: pki.ca.certFile } }, auth: { mode: 'mtls', clientCerts: { subject: 'cn', principals } } };
    clientCerts = loadConfig({ document, env: {} }).config.auth.clientCerts;
  });

  // An Object.prototype name is not in the list unless the list says so.
  const table: [string, string | number][] = [
    ['alice', 'alice@acme'],
    ['__proto__', 'proto'],
    ['mallory', 403],
    ['constructor', 403],
    ['toString', 403],
    ['hasOwnProperty', 403],
    ['valueOf', 403],
    ['name', 403],
    ['scopes', 403],
  ];
  for (const [cn, expected] of table) {
    it(`CN=${cn} → ${expected}`, () => {
      const p = certificatePrincipal(new X509Certificate(pki.issue(cn).cert), clientCerts);
      if (typeof expected === 'number') {
        assert.ok(p instanceof GatewayError && p.status === expected, `CN=${cn} was let in as ${JSON.stringify(p instanceof GatewayError ? p.code : p.subject)}`);
      } else {
        assert.ok(!(p instanceof GatewayError), String(p));
        assert.equal(p.subject, expected);
      }
    });
  }

  it('dn: a comma inside a value does not make another subject', () => {
    const dn = (file: string, subject: string) => {
      const p = certificatePrincipal(new X509Certificate(pki.issue(file, { subject }).cert), { subject: 'dn', principals: {} });
      assert.ok(!(p instanceof GatewayError), String(p));
      return p;
    };
    const [split, joined] = [dn('three-rdns', '/CN=admin/O=a/CN=b'), dn('two-rdns', '/O=a,CN=admin/CN=b')];
    assert.equal(split.subject, 'CN=b,O=a,CN=admin');
    assert.notEqual(joined.subject, split.subject);
    assert.notEqual(joined.id, split.id);
  });
});
