import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ambiguousMembers,
  MAX_NAME_LENGTH,
  mayBeShortened,
  mergeLists,
  namePrefix,
  prefixedName,
  prefixedUri,
  schemePrefix,
  splitName,
  splitUri,
} from '../../src/protocol/names.ts';

describe('virtual server names', () => {
  it('prefixes short names as they are, and reads them back', () => {
    assert.equal(prefixedName('files', 'read'), 'files__read');
    assert.deepEqual(splitName('files__read', ['git', 'files']), { member: 1, name: 'read' });
    assert.deepEqual(splitName('files__a__b', ['files']), { member: 0, name: 'a__b' });
    assert.equal(splitName('other__read', ['git', 'files']), undefined);
    assert.equal(splitName('files_read', ['files']), undefined);
  });

  it('keeps every name within 64 characters, stable, and distinct for distinct long names', () => {
    const table: [string, string][] = [
      ['p', 'x'.repeat(61)],
      ['p', 'x'.repeat(62)],
      ['accounting-department-tools', 'summarize_the_quarterly_financial_report_for_the_board'],
      ['accounting-department-tools', 'summarize_the_quarterly_financial_report_for_the_staff'],
      ['a'.repeat(64), 'tool'],
      ['m', '😀'.repeat(40)],
    ];
    const seen = new Set<string>();
    for (const [prefix, name] of table) {
      const v = prefixedName(prefix, name);
      assert.ok(v.length <= MAX_NAME_LENGTH, `${v} (${v.length})`);
      assert.equal(prefixedName(prefix, name), v, 'the same on every call');
      assert.ok(!seen.has(v), `distinct: ${v}`);
      seen.add(v);
      assert.equal(mayBeShortened(v), `${prefix}__${name}`.length > MAX_NAME_LENGTH, v);
      assert.doesNotThrow(() => encodeURIComponent(v), 'no lone surrogate at the cut');
    }
    assert.equal(prefixedName('p', 'x'.repeat(61)), `p__${'x'.repeat(61)}`, 'exactly 64 is kept whole');
    assert.match(prefixedName('p', 'x'.repeat(62)), /^p__x{52}-[0-9a-f]{8}$/);
  });

  it('makes prefixes tool names and URI schemes accept', () => {
    assert.equal(namePrefix('my.api'), 'my_api');
    assert.equal(schemePrefix('My_API'), 'my-api');
    assert.equal(schemePrefix('3d'), 'x3d');
    assert.equal(prefixedUri('git', 'file:///repo/README.md'), 'git+file:///repo/README.md');
    assert.deepEqual(splitUri('git+file:///repo/README.md', ['files', 'git']), { member: 1, uri: 'file:///repo/README.md' });
    assert.deepEqual(splitUri('git+repo://{owner}/{name}', ['git']), { member: 0, uri: 'repo://{owner}/{name}' });
    assert.equal(splitUri('file:///x', ['git']), undefined);
    assert.equal(splitUri('svn+file:///x', ['git']), undefined);
  });

  it('finds member names that would read two ways', () => {
    const table: [string[], [string, string][]][] = [
      [['files', 'git'], []],
      [['a', 'a_'], [['a', 'a_']]],
      [['a', 'a__b'], [['a', 'a__b']]],
      [['my.api', 'my_api'], [['my.api', 'my_api']]],
      [['Api', 'api'], [['Api', 'api']]],
      [['ab', 'a'], []],
    ];
    for (const [members, expected] of table) assert.deepEqual(ambiguousMembers(members), expected, members.join());
  });

  it('merges lists with virtual names and a table back to each owner', () => {
    const members = [
      { prefix: 'a', scheme: 'a' },
      { prefix: 'b', scheme: 'b' },
    ];
    const tools = mergeLists('tools', members, [[{ name: 'echo', description: 'x' }], [{ name: 'echo' }, { name: 'y'.repeat(70) }], undefined].slice(0, 2));
    assert.deepEqual(
      tools.items.map((t) => t.name),
      ['a__echo', 'b__echo', prefixedName('b', 'y'.repeat(70))],
    );
    assert.equal(tools.items[0]!.description, 'x', 'other fields kept');
    assert.deepEqual(tools.table.get(prefixedName('b', 'y'.repeat(70))), { member: 1, original: 'y'.repeat(70) });
    assert.deepEqual(tools.collisions, []);
    const resources = mergeLists('resourceTemplates', members, [[{ uriTemplate: 'demo://{x}', name: 'n' }], undefined]);
    assert.deepEqual(resources.items, [{ uriTemplate: 'a+demo://{x}', name: 'n' }]);
    const clash = mergeLists('tools', [members[0]!, members[0]!], [[{ name: 'x' }], [{ name: 'x' }]]);
    assert.deepEqual(clash.collisions, ['a__x']);
    assert.equal(clash.items.length, 1, 'the first member keeps the name');
  });
});
