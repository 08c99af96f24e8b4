/**
 * containerd's filter syntax for List (Walk), over snapshot infos.
 *
 * Contract:
 * - A filter is selectors joined by `,` (all must match); a request's several filters
 *   are alternatives (any may match); no filter matches everything. This is how
 *   containerd's `filters.ParseAll` combines them.
 * - A selector is `FIELDPATH`, `FIELDPATH==VALUE`, `FIELDPATH!=VALUE` or
 *   `FIELDPATH~=REGEXP` (matched in linear time, as containerd's RE2 does; a pattern
 *   RE2 cannot run, a backreference or lookaround, is a malformed filter). A field path
 *   is fields joined by `.`; a field is a name (`[A-Za-z_][A-Za-z0-9_]*`) or a
 *   double-quoted string (`labels."a.b/c"`). A value is a double-quoted string (with
 *   `\"`, `\\`, `\n`, `\t` escapes) or bare text up to the next `,`. A bare FIELDPATH
 *   matches when the field is present and not empty.
 * - Fields of a snapshot, as containerd's snapshot adaptor names them: `name`,
 *   `parent`, `kind` (`active`, `committed`, `view`) and `labels.KEY`. Any other
 *   field is never present (so `!=` matches it, as in containerd).
 * - A malformed filter is E_INVALID naming the filter and the position.
 */
import * as v8 from 'node:v8';
import { ThinError } from '../errors';

// containerd matches `~=` with Go's regexp (RE2): linear time, and no backreferences or
// lookaround. V8's linear engine (the `l` flag, behind this switch) keeps the same
// contract; a backtracking match of ^(a+)+$ takes exponential time, and since requests
// run one at a time it would stop the whole service.
v8.setFlagsFromString('--enable-experimental-regexp-engine');

export interface FilterTarget {
  name: string;
  parent: string;
  kind: string;
  labels: Record<string, string>;
}

type Op = '==' | '!=' | '~=';
interface Selector { path: string[]; op?: Op; value?: string; re?: RegExp }
export type Filter = Selector[][];

class Scanner {
  i = 0;
  constructor(readonly s: string) {}
  fail(what: string): never {
    throw new ThinError('E_INVALID', `filter ${JSON.stringify(this.s)}: ${what} at character ${this.i + 1}; write e.g. kind==active,labels."containerd.io/gc.root"`, { filter: this.s, position: this.i });
  }
  eof(): boolean { return this.i >= this.s.length; }
  peek(n = 1): string { return this.s.slice(this.i, this.i + n); }
  quoted(): string {
    let out = '';
    this.i++; // opening quote
    for (;;) {
      if (this.eof()) this.fail('unterminated quoted string');
      const c = this.s[this.i++];
      if (c === '"') return out;
      if (c === '\\') {
        if (this.eof()) this.fail('unterminated escape');
        const e = this.s[this.i++];
        const map: Record<string, string> = { '"': '"', '\\': '\\', n: '\n', t: '\t', r: '\r', '/': '/' };
        if (!(e in map)) this.fail(`unknown escape \\${e}`);
        out += map[e];
      } else {
        out += c;
      }
    }
  }
  field(): string {
    if (this.peek() === '"') return this.quoted();
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.s.slice(this.i));
    if (!m) this.fail('expected a field name');
    this.i += m[0].length;
    return m[0];
  }
  value(): string {
    if (this.peek() === '"') return this.quoted();
    const start = this.i;
    while (!this.eof() && this.s[this.i] !== ',') this.i++;
    if (this.i === start) this.fail('expected a value');
    return this.s.slice(start, this.i);
  }
}

function parseOne(text: string): Selector[] {
  const sc = new Scanner(text);
  const out: Selector[] = [];
  for (;;) {
    const path = [sc.field()];
    while (sc.peek() === '.') { sc.i++; path.push(sc.field()); }
    const sel: Selector = { path };
    const op = sc.peek(2);
    if (op === '==' || op === '!=' || op === '~=') {
      sc.i += 2;
      sel.op = op;
      sel.value = sc.value();
      if (op === '~=') {
        try {
          sel.re = new RegExp(sel.value, 'l');
        } catch (e) {
          sc.fail(`bad regular expression ${JSON.stringify(sel.value)} (${(e as Error).message})`);
        }
      }
    }
    out.push(sel);
    if (sc.eof()) return out;
    if (sc.peek() !== ',') sc.fail(`unexpected ${JSON.stringify(sc.peek())}`);
    sc.i++;
  }
}

/** Parse a List request's filters; an empty list (or only empty strings) matches everything. */
export function parseFilters(filters: readonly string[]): Filter {
  return filters.filter((f) => f.trim() !== '').map(parseOne);
}

function lookup(t: FilterTarget, path: string[]): string | undefined {
  if (path.length === 1) {
    if (path[0] === 'name') return t.name;
    if (path[0] === 'parent') return t.parent;
    if (path[0] === 'kind') return t.kind;
    return undefined;
  }
  if (path[0] === 'labels') {
    const key = path.slice(1).join('.');
    return Object.prototype.hasOwnProperty.call(t.labels, key) ? t.labels[key] : undefined;
  }
  return undefined;
}

function matchSelector(t: FilterTarget, s: Selector): boolean {
  const v = lookup(t, s.path);
  switch (s.op) {
    case undefined: return v !== undefined && v !== '';
    case '==': return v === s.value;
    case '!=': return v !== s.value;
    case '~=': return v !== undefined && s.re!.test(v);
  }
}

export function matches(f: Filter, t: FilterTarget): boolean {
  if (f.length === 0) return true;
  return f.some((sels) => sels.every((s) => matchSelector(t, s)));
}
