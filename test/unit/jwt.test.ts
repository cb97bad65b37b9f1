import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import { it } from 'node:test';
import { exportJWK } from 'jose';
import { JwtVerifier, TokenError } from '../../src/auth/jwt.ts';
import type { AuthConfig, JwsAlgorithm } from '../../src/config/types.ts';

/** Even with HS256 forced into the allow-list (the schema cannot express it), a JWK set never yields an HMAC key. */
it('never verifies HMAC with a public key, whatever the allow-list says', async () => {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k' };
  const auth = {
    mode: 'jwt',
    issuers: [{ issuer: 'iss', jwksUri: undefined, keys: { keys: [jwk] }, algorithms: ['RS256', 'HS256' as JwsAlgorithm] }],
    audience: ['aud'],
    clockToleranceSec: 0,
    jwksCacheMaxAgeMs: 60_000,
    jwksCooldownMs: 30_000,
  } as unknown as AuthConfig;
  const verifier = new JwtVerifier(auth);
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', kid: 'k' })}.${part({ iss: 'iss', aud: 'aud', sub: 's', exp: Math.floor(Date.now() / 1000) + 60 })}`;
  for (const secret of [publicKey.export({ type: 'spki', format: 'pem' }), JSON.stringify(jwk), Buffer.from(jwk.n!, 'base64url')]) {
    const token = `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
    await assert.rejects(verifier.verify(token, ['aud']), (err: unknown) => err instanceof TokenError && err.reason === 'token algorithm is not allowed' && !err.unavailable);
  }
});
