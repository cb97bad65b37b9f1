import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasUnwrittenParam, MAX_PARAM_HEADER_LENGTH, MAX_PARAM_HEADERS, paramHeadersOf, writeParamHeaders } from '../../src/protocol/param-headers.ts';

const prop = (type: string, mark?: unknown) => (mark === undefined ? { type } : { type, 'x-mcp-header': mark });

describe('protocol: x-mcp-header marks and the Mcp-Param-* headers written from arguments', () => {
  it('reads the marks reachable through properties chains, nested objects included', () => {
    const schema = { type: 'object', properties: { region: prop('string', 'Region'), opts: { type: 'object', properties: { limit: prop('integer', 'Limit'), dry: prop('boolean', 'Dry-Run') } }, sql: prop('string') } };
    assert.deepEqual(paramHeadersOf(schema), [
      { name: 'Region', path: ['region'] },
      { name: 'Limit', path: ['opts', 'limit'] },
      { name: 'Dry-Run', path: ['opts', 'dry'] },
    ]);
    assert.deepEqual(paramHeadersOf({ type: 'object', properties: { a: prop('string') } }), []);
    assert.deepEqual(paramHeadersOf(undefined), []);
  });

  const invalid: [string, unknown][] = [
    ['an empty name', { properties: { a: prop('string', '') } }],
    ['a name that is no token', { properties: { a: prop('string', 'Re gion') } }],
    ['a CR LF in the name', { properties: { a: prop('string', 'A\r\nX-Evil: 1') } }],
    ['a name that is no string', { properties: { a: prop('string', 7) } }],
    ['two names equal but for case', { properties: { a: prop('string', 'Region'), b: prop('string', 'region') } }],
    ['a number', { properties: { a: prop('number', 'N') } }],
    ['an object', { properties: { a: prop('object', 'O') } }],
    ['no type', { properties: { a: { 'x-mcp-header': 'A' } } }],
    ['under items', { properties: { a: { type: 'array', items: prop('string', 'A') } } }],
    ['under oneOf', { oneOf: [{ properties: { a: prop('string', 'A') } }] }],
    ['under $defs', { $defs: { x: prop('string', 'A') }, properties: { a: { $ref: '#/$defs/x' } } }],
    ['on the schema itself', { type: 'object', 'x-mcp-header': 'Root' }],
  ];
  for (const [what, schema] of invalid) {
    it(`refuses a schema with a mark: ${what}`, () => assert.equal(paramHeadersOf(schema), undefined));
  }

  it('writes each marked argument that has a value, encoded per the revision', () => {
    const marks = [
      { name: 'Region', path: ['region'] },
      { name: 'Greeting', path: ['greeting'] },
      { name: 'Padded', path: ['padded'] },
      { name: 'Sentinel', path: ['sentinel'] },
      { name: 'Limit', path: ['opts', 'limit'] },
      { name: 'Dry', path: ['opts', 'dry'] },
      { name: 'Absent', path: ['absent'] },
      { name: 'Null', path: ['nothing'] },
      { name: 'Float', path: ['float'] },
      { name: 'Huge', path: ['huge'] },
    ];
    const args = { region: 'us-west1', greeting: 'Hello, 世界', padded: ' padded ', sentinel: '=?base64?literal?=', opts: { limit: -7, dry: false }, nothing: null, float: 1.5, huge: 2 ** 53 };
    assert.deepEqual(writeParamHeaders(marks, args), {
      'mcp-param-region': 'us-west1',
      'mcp-param-greeting': '=?base64?SGVsbG8sIOS4lueVjA==?=',
      'mcp-param-padded': '=?base64?IHBhZGRlZCA=?=',
      'mcp-param-sentinel': '=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=',
      'mcp-param-limit': '-7',
      'mcp-param-dry': 'false',
    });
    assert.deepEqual(writeParamHeaders(marks, undefined), {});
    assert.deepEqual(writeParamHeaders([{ name: 'Text', path: ['t'] }], { t: 'line1\nline2' }), { 'mcp-param-text': '=?base64?bGluZTEKbGluZTI=?=' });
  });

  it('keeps the bounds: at most MAX_PARAM_HEADERS headers, none longer than MAX_PARAM_HEADER_LENGTH', () => {
    const marks = Array.from({ length: MAX_PARAM_HEADERS + 5 }, (_, i) => ({ name: `P${i}`, path: [`p${i}`] }));
    const args = Object.fromEntries(marks.map((_, i) => [`p${i}`, 'v']));
    assert.equal(Object.keys(writeParamHeaders(marks, args)).length, MAX_PARAM_HEADERS);
    assert.deepEqual(writeParamHeaders([{ name: 'Long', path: ['l'] }], { l: 'x'.repeat(MAX_PARAM_HEADER_LENGTH + 1) }), {});
  });

  it('tells a call with a marked argument no header carries (another type, too long) from one whose headers say all it has', () => {
    const marks = [
      { name: 'Region', path: ['region'] },
      { name: 'Limit', path: ['limit'] },
    ];
    for (const args of [{}, { region: 'eu' }, { region: 'eu', limit: 3 }, { region: null }, undefined]) assert.equal(hasUnwrittenParam(marks, args), false, JSON.stringify(args));
    for (const args of [{ region: 1.5 }, { region: { zone: 'a' } }, { limit: 2 ** 60 }, { region: 'x'.repeat(MAX_PARAM_HEADER_LENGTH + 1) }]) assert.equal(hasUnwrittenParam(marks, args), true, JSON.stringify(args).slice(0, 40));
  });
});
