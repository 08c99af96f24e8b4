/**
 * The reader's fast path (canonical mapping lines decoded from bytes, `writeBytes`) against
 * its model, the saxes-only path (`write` of the same text as one string): on random
 * documents mixing canonical lines with every near miss (other attribute orders, extra
 * attributes, quotes, two elements on a line, CRLF, tabs, leading zeros, long numbers,
 * comments holding mapping lines, defs and refs), cut into random byte chunks (also inside
 * multi-byte characters), both must make exactly the same sink calls, and on documents with
 * one planted mistake, fail with the same message at the same line and column.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isThinError } from '../../src/errors';
import { XmlReader } from '../../src/thin/xml/reader';
import type { DeviceInfo, MetadataSink, SuperblockInfo } from '../../src/thin/xml/types';
import { Rand } from '../../support/random';

class LogSink implements MetadataSink {
  calls: string[] = [];
  superblock(sb: SuperblockInfo): void { this.calls.push(`sb ${JSON.stringify(sb)}`); }
  device(d: DeviceInfo): void { this.calls.push(`dev ${JSON.stringify(d)}`); }
  mapping(o: number, d: number, len: number, t: number): void { this.calls.push(`map ${o} ${d} ${len} ${t}`); }
  endDevice(): void { this.calls.push('enddev'); }
  endSuperblock(): void { this.calls.push('endsb'); }
}

type Outcome = { calls: string[]; error?: { message: string; line: unknown; column: unknown } };

function run(feed: (r: XmlReader) => void): Outcome {
  const sink = new LogSink();
  const r = new XmlReader(sink, {});
  try {
    feed(r);
    r.end();
  } catch (e) {
    assert.ok(isThinError(e, 'E_PARSE'), `expected E_PARSE, got ${String(e)}`);
    return { calls: sink.calls, error: { message: e.message, line: e.details.line, column: e.details.column } };
  }
  return { calls: sink.calls };
}

/** A document of `devices` devices; `plant` (when given) puts one mistake somewhere. */
function genDoc(rng: Rand, plant: boolean): string {
  const nl = rng.chance(0.2) ? '\r\n' : '\n';
  const lines: string[] = ['<superblock uuid="é-ü" time="5" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="100000">'];
  const pad = () => (rng.chance(0.1) ? '\t' : '    ');
  const mistakeAt = plant ? rng.int(60) : -1;
  let n = 0;
  const mapping = (o: number, d: number, len: number, t: number): string => {
    const k = rng.int(14);
    const single = len === 1 && rng.chance(0.6);
    if (n++ === mistakeAt) {
      return rng.pick([
        `<single_mapping origin_block="${Math.max(0, o - 5)}" data_block="${d}" time="${t}"/>`, // out of order (or overlapping)
        `<single_mapping origin_block="${o}" data_block="100000" time="${t}"/>`, // past the data device
        `<range_mapping origin_begin="${o}" data_begin="${d}" length="0" time="${t}"/>`,
        `<single_mapping origin_block="${o}" data_block="${d}" time="4294967296"/>`,
        `<single_mapping origin_block="${o}" data_block="x${d}" time="${t}"/>`,
        `<single_mapping origin_block="${o}" data_block="${d}" time="${t}">`, // not closed
        `<wibble origin_block="${o}"/>`,
        `text <single_mapping origin_block="${o}" data_block="${d}" time="${t}"/>`,
        `<single_mapping origin_block="${o}" data_block="${d}"/>`,
      ]);
    }
    if (single) {
      switch (k) {
        case 0: return `<single_mapping data_block="${d}" origin_block="${o}" time="${t}"/>`;
        case 1: return `<single_mapping origin_block="${o}" data_block="${d}" time="${t}" extra="1"/>`;
        case 2: return `<single_mapping origin_block='${o}' data_block="${d}" time="${t}"/>`;
        case 3: return `<single_mapping origin_block="00${o}" data_block="${d}" time="${t}" />`;
        case 4: return `<single_mapping origin_block="${o}" data_block="${d}" time="${t}"></single_mapping>`;
        default: return `<single_mapping origin_block="${o}" data_block="${d}" time="${t}"/>`;
      }
    }
    switch (k) {
      case 0: return `<range_mapping origin_begin="${o}" length="${len}" data_begin="${d}" time="${t}"/>`;
      case 1: return `<range_mapping origin_begin="${o}" data_begin="${d}" length="${len}" time="${t}"/>  `;
      default: return `<range_mapping origin_begin="${o}" data_begin="${d}" length="${len}" time="${t}"/>`;
    }
  };
  // A def, used by a ref in one device.
  lines.push('  <def name="shared">');
  let o = 0;
  for (let i = 0; i < 3; i++) { const len = 1 + rng.int(3); lines.push(pad() + mapping(o, 50000 + o, len, 1)); o += len + rng.int(3); }
  lines.push('  </def>');
  const defEnd = o;
  for (let dev = 0; dev < 3; dev++) {
    lines.push(`  <device dev_id="${dev}" mapped_blocks="7" transaction="1" creation_time="0" snap_time="1">`);
    let origin = 0;
    if (dev === 1) { lines.push(`${pad()}<ref name="shared"/>`); origin = defEnd; }
    for (let i = 0; i < 20; i++) {
      origin += rng.int(4);
      const len = rng.chance(0.5) ? 1 : 1 + rng.int(9);
      const data = rng.int(90000);
      const time = rng.int(3);
      let line = pad() + mapping(origin, data, len, time);
      let extra = 0;
      if (rng.chance(0.1)) {
        // Two on one line, or a comment holding a canonical mapping line.
        if (rng.chance(0.5)) { line += `<single_mapping origin_block="${origin + len + 100}" data_block="1" time="0"/>`; extra = 101; }
        if (rng.chance(0.5)) { lines.push(line); line = `    <!-- ${nl}    <single_mapping origin_block="${origin}" data_block="9" time="0"/>${nl}    -->`; }
      }
      lines.push(line);
      origin += len + extra;
    }
    lines.push('  </device>');
  }
  lines.push('</superblock>');
  return lines.join(nl) + (rng.chance(0.5) ? nl : '');
}

function chunks(rng: Rand, buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length;) {
    const n = rng.chance(0.3) ? 1 + rng.int(3) : 1 + rng.int(400);
    out.push(buf.subarray(i, i + n));
    i += n;
  }
  return out;
}

test('fast path = saxes path on random documents, whole and in random chunks', () => {
  for (let seed = 1; seed <= 150; seed++) {
    const rng = new Rand(seed);
    const plant = seed % 2 === 0;
    const text = genDoc(rng, plant);
    const model = run((r) => r.write(text));
    const whole = run((r) => r.writeBytes(Buffer.from(text)));
    assert.deepEqual(whole, model, `seed ${seed} (whole):\n${text}`);
    const split = run((r) => { for (const c of chunks(rng, Buffer.from(text))) r.writeBytes(c); });
    assert.deepEqual(split, model, `seed ${seed} (chunks):\n${text}`);
    if (!plant) assert.equal(model.error, undefined, `seed ${seed}: the model rejects a good document: ${model.error?.message}`);
  }
});

test('the fast path takes canonical lines (same calls, far fewer saxes events)', () => {
  const lines = ['<superblock uuid="" time="1" transaction="1" data_block_size="128" nr_data_blocks="1000">', '  <device dev_id="3" mapped_blocks="2" transaction="0" creation_time="0" snap_time="0">'];
  for (let i = 0; i < 100; i++) lines.push(`    <single_mapping origin_block="${i}" data_block="${999 - i}" time="0"/>`);
  lines.push('  </device>', '</superblock>', '');
  const text = lines.join('\n');
  let tags = 0;
  const model = run((r) => r.write(text));
  const fast = run((r) => {
    // Count the elements saxes itself opens on the fast path.
    (r as unknown as { parser: { on(ev: string, f: () => void): void } }).parser.on('opentagstart', () => { tags++; });
    r.writeBytes(Buffer.from(text));
  });
  assert.deepEqual(fast, model);
  assert.ok(tags <= 2, `saxes opened ${tags} elements; the 100 mapping lines should bypass it`);
});
