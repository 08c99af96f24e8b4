/**
 * Child process of metadata-fuzz.test.ts: runs the bit-flip sweep in-process through the
 * public functions (ThinMetadata.open + superblock/devices, checkMetadata, dumpMetadata
 * to XML, lsDevices, and Pool.open read-only + status on a copy of the pool), one flip at
 * a time. Before each flip it prints `case N` so the parent can name the flip that hung
 * or blew the heap; an exception that is not a ThinError prints `BUG {json}`; a raw
 * (unsealed) flip of a live block that check reports clean prints `MISSED {json}`.
 *
 * argv: pool-dir seed per-block header-sample('all' or a count) live-blocks(comma list)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isThinError } from '../../src/errors';
import { MemoryDevice } from '../../src/io/memory-device';
import { Pool } from '../../src/pool/pool';
import { checkMetadata } from '../../src/thin/check';
import { dumpMetadata } from '../../src/thin/dump';
import { lsDevices } from '../../src/thin/device-usage';
import { ThinMetadata } from '../../src/thin/metadata';
import { XmlWriter } from '../../src/thin/xml/writer';
import { applyFlip, flips, knownBug, sealedBlocks } from './metadata-flip';

function attempt(what: string, fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (isThinError(e)) return (e as { code: string }).code;
    throw Object.assign(new Error(`${what}: ${(e as Error)?.stack ?? String(e)}`), { op: what });
  }
}

async function main(): Promise<void> {
const [dir, seedArg, perBlockArg, headerArg, liveArg] = process.argv.slice(2);
const live = new Set(liveArg ? liveArg.split(',').map(Number) : []);
const metaFile = path.join(dir, 'metadata');
const pristine = new Uint8Array(fs.readFileSync(metaFile));
const sealed = sealedBlocks(pristine);
const saltOf = new Map(sealed.map((s) => [s.block, s.salt]));
const cases = flips(pristine, sealed, Number(seedArg), Number(perBlockArg), headerArg === 'all' ? undefined : Number(headerArg));
// Pool.open on a scratch copy of the pool, for one flip in 16 (it rereads the files).
const scratch = fs.mkdtempSync(path.join(path.dirname(dir), 'flip-pool-'));
for (const f of fs.readdirSync(dir)) if (f !== 'pool.lock') fs.copyFileSync(path.join(dir, f), path.join(scratch, f));
let bugs = 0;
console.log(`cases ${cases.length} sealed ${sealed.length}`);
for (let i = 0; i < cases.length; i++) {
  const f = cases[i];
  console.log(`case ${i} ${JSON.stringify(f)}`);
  const image = Uint8Array.from(pristine);
  applyFlip(image, f, saltOf.get(f.block)!);
  const dev = () => MemoryDevice.from(image, 'metadata');
  try {
    let report: ReturnType<typeof checkMetadata> | undefined;
    if (!knownBug('check', f)) attempt('check', () => { report = checkMetadata(dev()); });
    if (!knownBug('open', f)) attempt('open', () => {
      const md = ThinMetadata.open(dev());
      md.superblock();
      for (const id of md.devices()) md.deviceDetails(id);
    });
    if (!knownBug('dump', f)) attempt('dump', () => {
      let n = 0;
      dumpMetadata(ThinMetadata.open(dev()), new XmlWriter((s: string) => { n += s.length; }));
    });
    if (!knownBug('ls', f)) attempt('ls', () => lsDevices(ThinMetadata.open(dev())));
    if (i % 16 === 0 && !knownBug('pool status', f)) {
      fs.writeFileSync(path.join(scratch, 'metadata'), image);
      let pool: Pool | undefined;
      attempt('pool status', () => {
        pool = Pool.open(scratch, { readOnly: true });
        pool.status();
      });
      if (pool) await pool.close(); // read-only: nothing to write; a failure here fails the sweep
    }
    if (!f.reseal && live.has(f.block) && report?.ok) {
      console.log(`MISSED ${JSON.stringify({ case: i, ...f })}`);
    }
  } catch (e) {
    bugs++;
    console.log(`BUG ${JSON.stringify({ case: i, ...f, op: (e as { op?: string }).op, error: (e as Error).message.split('\n').slice(0, 6).join(' | ') })}`);
  }
}
fs.rmSync(scratch, { recursive: true, force: true });
console.log(`done ${cases.length} bugs ${bugs}`);
}

// Loaded by `node --test` without arguments (it lives under test/), it does nothing.
if (process.argv.length > 2) {
  main().catch((e) => {
    console.log(`BUG ${JSON.stringify({ op: 'sweep', error: String((e as Error)?.stack ?? e).split('\n').slice(0, 6).join(' | ') })}`);
    process.exitCode = 1;
  });
}
