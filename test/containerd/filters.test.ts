/**
 * containerd's filter syntax (src/containerd/filters.ts) against a hand-written table
 * of what containerd's filters package decides for the same inputs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matches, parseFilters, type FilterTarget } from '../../src/containerd/filters';

const snaps: FilterTarget[] = [
  { name: 'default/1/sha256:aa', parent: '', kind: 'committed', labels: { 'containerd.io/gc.root': '2024', 'a.b': 'x' } },
  { name: 'default/2/extract 1', parent: 'default/1/sha256:aa', kind: 'active', labels: {} },
  { name: 'default/3/v', parent: 'default/1/sha256:aa', kind: 'view', labels: { team: 'blue,green' } },
];

const cases: Array<[string[], string[]]> = [
  [[], ['default/1/sha256:aa', 'default/2/extract 1', 'default/3/v']],
  [['kind==active'], ['default/2/extract 1']],
  [['kind!=active'], ['default/1/sha256:aa', 'default/3/v']],
  [['parent==default/1/sha256:aa,kind==view'], ['default/3/v']],
  [['kind==view', 'kind==active'], ['default/2/extract 1', 'default/3/v']],
  [['parent'], ['default/2/extract 1', 'default/3/v']],
  [['labels."containerd.io/gc.root"'], ['default/1/sha256:aa']],
  [['labels."a.b"==x'], ['default/1/sha256:aa']],
  [['labels.a.b==x'], ['default/1/sha256:aa']],
  [['labels.team=="blue,green"'], ['default/3/v']],
  [['name~=extract'], ['default/2/extract 1']],
  [['name~=^default/[13]/'], ['default/1/sha256:aa', 'default/3/v']],
  [['labels.nope!=x'], ['default/1/sha256:aa', 'default/2/extract 1', 'default/3/v']],
  [['nosuchfield==x'], []],
  [['name=="default/2/extract 1"'], ['default/2/extract 1']],
];

for (const [filters, want] of cases) {
  test(`filter ${JSON.stringify(filters)}`, () => {
    const f = parseFilters(filters);
    assert.deepEqual(snaps.filter((s) => matches(f, s)).map((s) => s.name), want);
  });
}

for (const bad of ['kind==', '==x', 'labels."open', 'name~=(', 'kind==a,', 'a..b', 'kind=active']) {
  test(`malformed filter ${JSON.stringify(bad)} is E_INVALID with its position`, () => {
    assert.throws(() => parseFilters([bad]), (e: any) => e.code === 'E_INVALID' && /filter .* at character \d+/.test(e.message));
  });
}
