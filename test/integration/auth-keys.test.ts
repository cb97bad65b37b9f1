import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, SignJWT } from 'jose';
import type { Gateway } from '../../src/gateway.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startTestIssuer, type TestIssuer } from '../helpers/oauth.ts';
import { INIT, post } from '../helpers/raw.ts';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.ts';

const AUD = 'urn:mcpgw:test';
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('auth: issuer keys', () => {
  let issuer: TestIssuer;
  let up: RecordingUpstream;
  let gw: Gateway;
  let url: string;

  before(async () => {
    [issuer, up] = await Promise.all([startTestIssuer(), startRecordingUpstream()]);
    gw = await startGateway({
      auth: { mode: 'jwt', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }], audience: AUD, jwksCooldown: '400ms' },
      servers: { api: { upstreams: [{ url: up.url }] } },
    });
    url = `${gw.url}/mcp/api`;
  });
  after(async () => {
    await gw?.close();
    await Promise.all([issuer?.close(), up?.close()]);
  });

  it('fetches the JWKS once and caches verified tokens', async () => {
    const token = await issuer.sign({ sub: 'alice', aud: AUD });
    for (let i = 0; i < 10; i++) assert.equal((await post(url, INIT, bearer(token))).status, 200);
    assert.equal(issuer.fetches, 1);
  });

  it('refetches on an unknown kid at most once per cooldown', async () => {
    await new Promise((r) => setTimeout(r, 450));
    const before = issuer.fetches;
    for (let i = 0; i < 8; i++) {
      const k = await issuer.addKey(false);
      assert.equal((await post(url, INIT, bearer(await issuer.sign({ sub: 'alice', aud: AUD }, { key: k.privateKey, kid: k.kid })))).status, 401);
    }
    assert.equal(issuer.fetches - before, 1, 'a flood of unknown kids costs the issuer one fetch');
  });

  it('picks up a rotated key without a restart', async () => {
    const k = await issuer.addKey(true);
    await new Promise((r) => setTimeout(r, 450));
    const before = issuer.fetches;
    const res = await post(url, INIT, bearer(await issuer.sign({ sub: 'alice', aud: AUD }, { key: k.privateKey, kid: k.kid })));
    assert.equal(res.status, 200, res.text);
    assert.equal(issuer.fetches - before, 1);
  });

  it('answers 503 (not 401) when the issuer keys cannot be fetched', async () => {
    const down = await startGateway({
      auth: { mode: 'jwt', issuer: 'https://down.example/', jwksUri: 'http://127.0.0.1:9/jwks', audience: AUD },
      servers: { api: { upstreams: [{ url: up.url }] } },
    });
    try {
      const token = await new SignJWT({ sub: 'a', aud: AUD, iss: 'https://down.example/' })
        .setProtectedHeader({ alg: 'ES256', kid: 'x' })
        .setExpirationTime('5m')
        .sign(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
      const res = await post(`${down.url}/mcp/api`, INIT, bearer(token));
      assert.equal(res.status, 503, res.text);
      assert.equal((res.json as { error: { data: { code: string } } }).error.data.code, 'MCPGW_ERR_AUTH_UNAVAILABLE');
    } finally {
      await down.close();
    }
  });
});

describe('auth: static keys and several issuers', () => {
  let up: RecordingUpstream;
  let gw: Gateway;
  let url: string;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ed = generateKeyPairSync('ed25519');

  before(async () => {
    up = await startRecordingUpstream();
    const dir = mkdtempSync(join(tmpdir(), 'mcpgw-keys-'));
    const jwksFile = join(dir, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', use: 'sig' }] }));
    const pemFile = join(dir, 'keys.pem');
    writeFileSync(pemFile, `${ec.publicKey.export({ type: 'spki', format: 'pem' }) as string}\n${ed.publicKey.export({ type: 'spki', format: 'pem' }) as string}`);
    gw = await startGateway({
      auth: {
        mode: 'jwt',
        audience: [AUD, 'urn:other'],
        issuers: [
          { issuer: 'https://jwks-file.test/', keysFile: jwksFile, algorithms: ['RS256'] },
          { issuer: 'https://pem-file.test/', keysFile: pemFile },
        ],
      },
      servers: { api: { upstreams: [{ url: up.url }] } },
    });
    url = `${gw.url}/mcp/api`;
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  const sign = (iss: string, alg: string, key: Parameters<SignJWT['sign']>[0], kid?: string, aud = AUD) =>
    new SignJWT({ sub: 'svc', aud, iss })
      .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
      .setExpirationTime('5m')
      .sign(key);

  const table: [string, () => Promise<string>, number][] = [
    ['RS256 from a JWK set file', () => sign('https://jwks-file.test/', 'RS256', rsa.privateKey, 'rsa-1'), 200],
    ['any listed audience', () => sign('https://jwks-file.test/', 'RS256', rsa.privateKey, 'rsa-1', 'urn:other'), 200],
    ['ES256 from a PEM file, no kid', () => sign('https://pem-file.test/', 'ES256', ec.privateKey), 200],
    ['EdDSA from the same PEM file', () => sign('https://pem-file.test/', 'EdDSA', ed.privateKey), 200],
    ['an algorithm outside that issuer\'s allow-list', () => sign('https://jwks-file.test/', 'PS256', rsa.privateKey, 'rsa-1'), 401],
    ['the other issuer\'s key', () => sign('https://jwks-file.test/', 'ES256', ec.privateKey), 401],
    ['a key neither file holds', () => sign('https://pem-file.test/', 'ES256', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey), 401],
  ];
  for (const [name, token, status] of table) {
    it(`${name} → ${status}`, async () => {
      const res = await post(url, INIT, bearer(await token()));
      assert.equal(res.status, status, res.text);
    });
  }
});
