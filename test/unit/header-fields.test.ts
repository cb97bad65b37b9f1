import assert from 'node:assert/strict';
import { validateHeaderValue } from 'node:http';
import { describe, it } from 'node:test';
import { bearerChallenge } from '../../src/auth/resource.ts';
import { quotedString } from '../../src/protocol/header-fields.ts';

describe('header field values built from input', () => {
  const quoted: [string, string, string][] = [
    ['plain', 'https://gw.example/.well-known/oauth-protected-resource/mcp/api', '"https://gw.example/.well-known/oauth-protected-resource/mcp/api"'],
    ['a quote and a comma', 'a", error="x', '"a\\", error=\\"x"'],
    ['a backslash', 'a\\b', '"a\\\\b"'],
    ['a trailing backslash (would escape the closing quote)', 'a\\', '"a\\\\"'],
    ['tab and space', 'a\tb c', '"a\tb c"'],
    ['obs-text', 'caf\u00e9', '"caf\u00e9"'],
    ['empty', '', '""'],
  ];
  for (const [name, value, expected] of quoted) {
    it(`quotes ${name}`, () => {
      const out = quotedString(value);
      assert.equal(out, expected);
      validateHeaderValue('x', out);
    });
  }

  const refused: [string, string][] = [
    ['CR LF', 'a\r\nX-Injected: yes'],
    ['a lone LF', 'a\nb'],
    ['NUL', 'a\u0000b'],
    ['DEL', 'a\u007fb'],
    ['a character past Latin-1', 'a\u2603'],
  ];
  for (const [name, value] of refused) {
    it(`refuses ${name}`, () => assert.throws(() => quotedString(value), TypeError));
  }

  it('a challenge cannot gain parameters from the metadata URL', () => {
    const challenge = bearerChallenge('https://gw.example/x", error="invalid_request', 'invalid_token', ['mcp']);
    assert.equal(challenge, 'Bearer resource_metadata="https://gw.example/x\\", error=\\"invalid_request", error="invalid_token", scope="mcp"');
    assert.throws(() => bearerChallenge('https://gw.example/\r\nSet-Cookie: a=b'), TypeError);
  });
});
