/**
 * The bad-input table: every mistake tried as a new user would make it, with the exit
 * status it must give, words its message must contain, the error code it must print,
 * and what must hold of the pool afterwards. bad-input.test.ts runs each row through the
 * real CLI. Rows marked `issue` are the cases reported in issue 15; the rest were added
 * while writing the table (wrong types, missing arguments, files for directories,
 * unknown devices, negative, fractional and huge numbers).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { thinsimOk } from '../helpers/cli';
import { missingMount } from '../layers/image-fixtures';
import type { Env } from './bad-input-env';

/** What must hold of a pool after the row: byte-identical metadata and pool.json, or both checkers clean. */
export type After = 'unchanged' | 'clean';

export interface Row {
  name: string;
  issue?: boolean;
  args: (e: Env) => string[];
  status: number;
  /** Each must match the message (stderr). */
  words: RegExp[];
  /** The [E_...] code the message ends with (absent: no ThinError, e.g. a yargs usage error). */
  code?: string;
  /** Which pool to inspect afterwards (default the shared pool), and what must hold. */
  pool?: (e: Env) => string;
  after?: After;
  /** Prepare the row (e.g. a private pool copy with a damaged pool.json). */
  setup?: (e: Env) => void;
  /** Further checks after the row (e.g. the pool works on). */
  then?: (e: Env) => void;
  /** Why the row cannot run here (a missing tool), or undefined. */
  skip?: () => string | undefined;
  /** Run with `thinsim serve` holding this pool (stopped with SIGTERM after the row). */
  serving?: (e: Env) => string;
}

const editTable = (pool: string, edit: (t: Record<string, any>) => void): void => {
  const file = path.join(pool, 'pool.json');
  const t = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(t);
  fs.writeFileSync(file, JSON.stringify(t, null, 2));
};
const priv = (e: Env, name: string) => e.dir.file(name);

export const ROWS: Row[] = [
  // ---- the cases of the issue -----------------------------------------------------------
  { name: 'restore while serve holds the pool', issue: true, serving: (e) => e.pool, args: (e) => ['restore', e.pool, '-i', e.xml], status: 1, words: [/busy/, /pid \d+/], code: 'E_POOL_BUSY', after: 'clean' },
  { name: 'restore into the served pool\'s metadata file', issue: true, serving: (e) => e.pool, args: (e) => ['restore', path.join(e.pool, 'metadata'), '-i', e.xml], status: 1, words: [/busy/, /pid \d+/], code: 'E_POOL_BUSY', after: 'clean' },
  {
    name: 'restore into a metadata file a server holds open (pool elsewhere)', issue: true,
    setup: (e) => {
      fs.writeFileSync(priv(e, 'ext-meta'), ''); fs.truncateSync(priv(e, 'ext-meta'), 4 << 20);
      fs.writeFileSync(priv(e, 'ext-data'), ''); fs.truncateSync(priv(e, 'ext-data'), 64 << 20);
      thinsimOk(['pool', 'create', priv(e, 'ext-pool'), '--data-dev', priv(e, 'ext-data'), '--metadata-dev', priv(e, 'ext-meta')]);
    },
    serving: (e) => priv(e, 'ext-pool'),
    args: (e) => ['restore', priv(e, 'ext-meta'), '-i', e.xml], status: 1, words: [/is open in process \d+/, /stop it/], code: 'E_POOL_BUSY',
    pool: (e) => priv(e, 'ext-pool'), after: 'clean',
  },
  { name: 'pool.json: a thin size that is not a number, then a write far past its end', issue: true, setup: (e) => editTable(e.copyPool('p-nan'), (t) => { t.thins['1'].size = '64M'; }), args: (e) => ['thin', 'write', priv(e, 'p-nan'), '1', '--offset', '100G', '-i', e.data], status: 2, words: [/pool\.json/, /thins\["1"\]\.size/, /"64M"/, /fix it/], code: 'E_PARSE', pool: (e) => priv(e, 'p-nan'), after: 'unchanged' },
  { name: 'pool.json: a device without its size entry', issue: true, setup: (e) => editTable(e.copyPool('p-noentry'), (t) => { delete t.thins['2']; }), args: (e) => ['thin', 'status', priv(e, 'p-noentry'), '2'], status: 2, words: [/pool\.json/, /no size for thin device 2/, /add "2"/], code: 'E_PARSE', pool: (e) => priv(e, 'p-noentry'), after: 'unchanged' },
  { name: 'thin read -o into a directory that does not exist', issue: true, args: (e) => ['thin', 'read', e.pool, '1', '--length', '4K', '-o', e.missingDir], status: 1, words: [/--output/, /does not exist/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'thin read -o a directory', issue: true, args: (e) => ['thin', 'read', e.pool, '1', '--length', '4K', '-o', e.emptyDir], status: 2, words: [/--output/, /is a directory/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'dump -o into a directory that does not exist', issue: true, args: (e) => ['dump', e.pool, '-o', e.missingDir], status: 1, words: [/--output/, /does not exist/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'dump -o a directory', issue: true, args: (e) => ['dump', e.pool, '-o', e.emptyDir], status: 2, words: [/--output/, /is a directory/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin import of a directory', issue: true, args: (e) => ['thin', 'import', e.pool, '1', e.emptyDir], status: 2, words: [/image/, /is a directory/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'pool create over a regular file', issue: true, args: (e) => ['pool', 'create', e.file], status: 2, words: [/exists and is not a directory/], code: 'E_INVALID' },
  { name: 'experiment --out an existing file', issue: true, args: (e) => ['experiment', 'block-size', '--quick', '--out', e.file], status: 2, words: [/--out/, /not a directory/], code: 'E_INVALID' },
  { name: 'pool resize with no size', issue: true, args: (e) => ['pool', 'resize', e.pool], status: 2, words: [/--data-size/, /--metadata-size/], after: 'unchanged' },
  { name: '--size -5G', issue: true, args: (e) => ['thin', 'create', e.pool, '7', '--size', '-5G'], status: 2, words: [/--size/, /-5G/, /negative/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'id 1.5', issue: true, args: (e) => ['thin', 'create', e.pool, '1.5', '--size', '1M'], status: 2, words: [/1\.5/, /not a whole number/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'image import of a truncated archive', issue: true, args: (e) => ['image', 'import', e.pool, e.archives.truncated], status: 2, words: [/truncated/, /byte 200000/], code: 'E_PARSE', after: 'unchanged' },
  { name: 'image import of a gzipped archive', issue: true, args: (e) => ['image', 'import', e.pool, e.archives.gzipped], status: 2, words: [/gzip-compressed/, /gunzip/], code: 'E_PARSE', after: 'unchanged' },
  { name: 'image import of an archive whose layer is truncated', issue: true, skip: missingMount, args: (e) => ['image', 'import', e.imagePool, e.archives.badLayer, '--base-size', '64M'], status: 2, words: [/bad-layer\.tar/, /truncated/], code: 'E_PARSE', pool: (e) => e.imagePool, after: 'clean' },
  { name: 'serve --socket in a directory that does not exist', issue: true, args: (e) => ['serve', e.pool, '--socket', path.join(e.missingDir, 'nbd.sock')], status: 1, words: [/--socket/, /does not exist/, /mkdir/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'a second server on a socket in use', issue: true, serving: (e) => e.pool, setup: (e) => { e.copyPool('p-second'); }, args: (e) => ['serve', priv(e, 'p-second'), '--socket', priv(e, 'serve.sock')], status: 1, words: [/listening on/] },
  { name: 'a second server on a pool serve holds (refused before its warm-up)', serving: (e) => e.pool, args: (e) => ['serve', e.pool, '--socket', priv(e, 'second.sock')], status: 1, words: [/busy/, /pid \d+/], code: 'E_POOL_BUSY', after: 'clean' },
  { name: 'thin write while serve holds the pool', serving: (e) => e.pool, args: (e) => ['thin', 'write', e.pool, '1', '-i', e.data], status: 1, words: [/busy/, /pid \d+/, /read-only commands/], code: 'E_POOL_BUSY', after: 'clean' },
  { name: 'thin write -i a file that does not exist', issue: true, args: (e) => ['thin', 'write', e.pool, '1', '-i', e.missing], status: 1, words: [/--input/, /does not exist/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'thin write -i a directory (not "not found")', issue: true, args: (e) => ['thin', 'write', e.pool, '1', '-i', e.emptyDir], status: 2, words: [/--input/, /is a directory/], code: 'E_INVALID', after: 'unchanged' },

  // ---- thin device ids and sizes ---------------------------------------------------------
  { name: 'id not a number', args: (e) => ['thin', 'create', e.pool, 'x', '--size', '1M'], status: 2, words: [/"x" is not a number/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'id negative', args: (e) => ['thin', 'create', e.pool, '-1', '--size', '1M'], status: 2, words: [/-1 is negative/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'id beyond 24 bits', args: (e) => ['thin', 'create', e.pool, '16777216', '--size', '1M'], status: 2, words: [/out of range/, /16777215/], code: 'E_RANGE', after: 'unchanged' },
  { name: 'id huge', args: (e) => ['thin', 'create', e.pool, '99999999999999999999', '--size', '1M'], status: 2, words: [/out of range|not a whole number/], after: 'unchanged' },
  { name: 'id already exists', args: (e) => ['thin', 'create', e.pool, '1', '--size', '1M'], status: 1, words: [/already exists/], code: 'E_DEVICE_EXISTS', after: 'unchanged' },
  { name: 'thin create without --size', args: (e) => ['thin', 'create', e.pool, '7'], status: 2, words: [/size/] , after: 'unchanged' },
  { name: 'thin create --size 0', args: (e) => ['thin', 'create', e.pool, '7', '--size', '0'], status: 2, words: [/positive/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin create --size fractional bytes', args: (e) => ['thin', 'create', e.pool, '7', '--size', '1.5'], status: 2, words: [/not a whole number of bytes/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin create --size not a multiple of 512', args: (e) => ['thin', 'create', e.pool, '7', '--size', '1000'], status: 2, words: [/multiple of 512/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin create --size with an unknown unit', args: (e) => ['thin', 'create', e.pool, '7', '--size', '10Q'], status: 2, words: [/"10Q" is not a size/, /64K/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin create --size huge', args: (e) => ['thin', 'create', e.pool, '7', '--size', '99999P'], status: 2, words: [/too large/], code: 'E_RANGE', after: 'unchanged' },
  { name: 'thin create on a pool that does not exist', args: (e) => ['thin', 'create', e.missing, '1', '--size', '1M'], status: 1, words: [/not a thinsim pool|does not exist/, /pool create/], code: 'E_NOT_FOUND' },
  { name: 'thin create on a regular file', args: (e) => ['thin', 'create', e.file, '1', '--size', '1M'], status: 2, words: [/regular-file is a file, not a thinsim pool/], code: 'E_INVALID' },
  { name: 'id in exponent notation', args: (e) => ['thin', 'create', e.pool, '1e3', '--size', '1M'], status: 2, words: [/"1e3" is not a number/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin read --length huge', args: (e) => ['thin', 'read', e.pool, '1', '--length', '99999P'], status: 2, words: [/--length/, /too large/], code: 'E_RANGE', after: 'unchanged' },
  { name: 'thin without a command', args: () => ['thin'], status: 2, words: [/Name a thin command: create/, /thinsim thin --help/] },
  { name: 'thin create without its arguments', args: () => ['thin', 'create'], status: 2, words: [/missing arguments/, /thinsim thin create --help/] },
  { name: 'thin snap of an unknown origin', args: (e) => ['thin', 'snap', e.pool, '7', '9'], status: 1, words: [/device 9 does not exist/], code: 'E_NO_DEVICE', after: 'unchanged' },
  { name: 'thin snap origin 2.5', args: (e) => ['thin', 'snap', e.pool, '7', '2.5'], status: 2, words: [/origin id 2\.5 is not a whole number/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin delete of an unknown device', args: (e) => ['thin', 'delete', e.pool, '9'], status: 1, words: [/device 9 does not exist/], code: 'E_NO_DEVICE', after: 'unchanged' },
  { name: 'thin status of an unknown device', args: (e) => ['thin', 'status', e.pool, '9'], status: 1, words: [/device 9 does not exist/], code: 'E_NO_DEVICE', after: 'unchanged' },
  { name: 'thin write past the device end', args: (e) => ['thin', 'write', e.pool, '1', '--offset', '100G', '-i', e.data], status: 2, words: [/beyond|past|end/i], after: 'unchanged' },
  { name: 'thin write --offset fractional bytes', args: (e) => ['thin', 'write', e.pool, '1', '--offset', '0.3', '-i', e.data], status: 2, words: [/--offset/, /whole number of bytes/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin write to an unknown device', args: (e) => ['thin', 'write', e.pool, '9', '-i', e.data], status: 1, words: [/device 9 does not exist/], code: 'E_NO_DEVICE', after: 'unchanged' },
  { name: 'thin read --length negative', args: (e) => ['thin', 'read', e.pool, '1', '--length', '-4K'], status: 2, words: [/--length/, /negative/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'thin read without --length', args: (e) => ['thin', 'read', e.pool, '1'], status: 2, words: [/length/], after: 'unchanged' },
  { name: 'thin read past the device end', args: (e) => ['thin', 'read', e.pool, '1', '--offset', '16M', '--length', '4K'], status: 2, words: [/beyond|past|end/i], after: 'unchanged' },
  { name: 'thin discard past the device end', args: (e) => ['thin', 'discard', e.pool, '1', '--length', '1G'], status: 2, words: [/beyond|past|end/i], after: 'unchanged' },
  { name: 'thin import of a file that does not exist', args: (e) => ['thin', 'import', e.pool, '1', e.missing], status: 1, words: [/image/, /does not exist/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'thin export into a directory that does not exist', args: (e) => ['thin', 'export', e.pool, '1', e.missingDir], status: 1, words: [/export file/, /does not exist/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'thin export to a directory', args: (e) => ['thin', 'export', e.pool, '1', e.emptyDir], status: 2, words: [/export file/, /is a directory/], code: 'E_INVALID', after: 'unchanged' },

  // ---- pool -------------------------------------------------------------------------------
  { name: 'pool status of a path that does not exist', args: (e) => ['pool', 'status', e.missing], status: 1, words: [/not a thinsim pool/, /pool create/], code: 'E_NOT_FOUND' },
  { name: 'pool status of a directory without a pool', args: (e) => ['pool', 'status', e.emptyDir], status: 1, words: [/not a thinsim pool/], code: 'E_NOT_FOUND' },
  { name: 'pool.json not JSON', setup: (e) => fs.writeFileSync(path.join(e.copyPool('p-json'), 'pool.json'), '{'), args: (e) => ['pool', 'status', priv(e, 'p-json')], status: 2, words: [/pool\.json is not valid JSON/], code: 'E_PARSE' },
  { name: 'pool.json: a feature that is not true/false', setup: (e) => editTable(e.copyPool('p-feat'), (t) => { t.features.readOnly = 'yes'; }), args: (e) => ['pool', 'status', priv(e, 'p-feat')], status: 2, words: [/features\.readOnly/, /true or false/], code: 'E_PARSE', pool: (e) => priv(e, 'p-feat'), after: 'unchanged' },
  { name: 'pool.json: noSpaceTimeout not a number', setup: (e) => editTable(e.copyPool('p-nst'), (t) => { t.noSpaceTimeout = 'soon'; }), args: (e) => ['thin', 'status', priv(e, 'p-nst'), '1'], status: 2, words: [/noSpaceTimeout/, /seconds/], code: 'E_PARSE', pool: (e) => priv(e, 'p-nst'), after: 'unchanged' },
  { name: 'pool.json: a thins key that is not an id', setup: (e) => editTable(e.copyPool('p-key'), (t) => { t.thins.root = { size: 512 }; }), args: (e) => ['pool', 'status', priv(e, 'p-key')], status: 2, words: [/thins\["root"\]/, /not a thin device id/], code: 'E_PARSE', pool: (e) => priv(e, 'p-key'), after: 'unchanged' },
  { name: 'pool.json: an empty dataDev', setup: (e) => editTable(e.copyPool('p-dev'), (t) => { t.dataDev = ''; }), args: (e) => ['pool', 'status', priv(e, 'p-dev')], status: 2, words: [/dataDev/, /path/], code: 'E_PARSE', pool: (e) => priv(e, 'p-dev'), after: 'unchanged' },
  { name: 'pool create where a pool exists', args: (e) => ['pool', 'create', e.pool], status: 1, words: [/already holds a pool/], code: 'E_DEVICE_EXISTS', after: 'unchanged' },
  { name: 'pool create --block-size not a multiple of 64K', args: (e) => ['pool', 'create', priv(e, 'p-bs'), '--block-size', '100K'], status: 2, words: [/multiple of 64 KiB/], code: 'E_INVALID' },
  { name: 'pool create --block-size beyond 1G', args: (e) => ['pool', 'create', priv(e, 'p-bs2'), '--block-size', '2G'], status: 2, words: [/1 GiB/], code: 'E_INVALID' },
  { name: 'pool create --data-size not a size', args: (e) => ['pool', 'create', priv(e, 'p-ds'), '--data-size', 'lots'], status: 2, words: [/--data-size/, /"lots" is not a size/], code: 'E_INVALID' },
  { name: 'pool create --mode unknown', args: (e) => ['pool', 'create', priv(e, 'p-mode'), '--mode', 'fast'], status: 2, words: [/fast/, /loop-lvm/] },
  { name: 'pool create --data-dev that does not exist', args: (e) => ['pool', 'create', priv(e, 'p-dd'), '--data-dev', e.missing], status: 1, words: [/--data-dev/, /does not exist/], code: 'E_NOT_FOUND' },
  { name: 'pool create --metadata-dev a directory', args: (e) => ['pool', 'create', priv(e, 'p-md'), '--metadata-dev', e.emptyDir], status: 2, words: [/--metadata-dev/, /is a directory/], code: 'E_INVALID' },
  { name: 'pool create --low-water-mark negative', args: (e) => ['pool', 'create', priv(e, 'p-lwm'), '--low-water-mark', '-1'], status: 2, words: [/--low-water-mark -1 is negative/], code: 'E_INVALID' },
  { name: 'pool create --no-space-timeout not a number', args: (e) => ['pool', 'create', priv(e, 'p-nst2'), '--no-space-timeout', 'x'], status: 2, words: [/--no-space-timeout "x" is not a number/], code: 'E_INVALID' },
  { name: 'pool create without a directory', args: () => ['pool', 'create'], status: 2, words: [/missing argument/, /thinsim pool create --help/] },
  { name: 'pool create --metadata-size too small', args: (e) => ['pool', 'create', priv(e, 'p-small'), '--metadata-size', '1K'], status: 1, words: [/at least 16/], code: 'E_TOO_SMALL' },
  { name: 'pool message set_transaction_id with the wrong current id', args: (e) => ['pool', 'message', e.pool, 'set_transaction_id', '5', '6'], status: 1, words: [/transaction id is \d+, not 5/], code: 'E_TRANSACTION_MISMATCH', after: 'unchanged' },
  { name: 'pool message release_metadata_snap with none held', args: (e) => ['pool', 'message', e.pool, 'release_metadata_snap'], status: 1, words: [/no metadata snapshot is held/], code: 'E_NO_METADATA_SNAP', after: 'unchanged' },
  { name: 'pool resize shrinking', args: (e) => ['pool', 'resize', e.pool, '--data-size', '1M'], status: 1, words: [/cannot shrink/], code: 'E_UNSUPPORTED', after: 'unchanged' },
  { name: 'pool message unknown', args: (e) => ['pool', 'message', e.pool, 'frob'], status: 2, words: [/unknown pool message "frob"/, /create_thin/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'pool message create_thin x', args: (e) => ['pool', 'message', e.pool, 'create_thin', 'x'], status: 2, words: [/dev_id must be a whole number/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'pool message delete of an unknown device', args: (e) => ['pool', 'message', e.pool, 'delete', '99'], status: 1, words: [/device 99 does not exist/], code: 'E_NO_DEVICE', after: 'unchanged' },

  // ---- offline tools ------------------------------------------------------------------------
  { name: 'restore -i a file that does not exist', args: (e) => ['restore', e.pool, '-i', e.missing], status: 1, words: [/--input/, /does not exist/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'restore -i a directory', args: (e) => ['restore', e.pool, '-i', e.emptyDir], status: 2, words: [/--input/, /is a directory/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'restore of broken XML leaves the pool as it was', args: (e) => ['restore', e.pool, '-i', e.garbage], status: 2, words: [/garbage\.xml|XML|xml/], code: 'E_PARSE', after: 'unchanged' },
  { name: 'restore of XML with another data block size into a pool', setup: (e) => fs.writeFileSync(priv(e, 'bs.xml'), fs.readFileSync(e.xml, 'utf8').replace('data_block_size="128"', 'data_block_size="256"')), args: (e) => ['restore', e.pool, '-i', priv(e, 'bs.xml')], status: 2, words: [/data block size of 256 sectors/, /uses 128/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'restore of XML with more data blocks than the pool holds', setup: (e) => fs.writeFileSync(priv(e, 'nb.xml'), fs.readFileSync(e.xml, 'utf8').replace(/nr_data_blocks="\d+"/, 'nr_data_blocks="999999"')), args: (e) => ['restore', e.pool, '-i', priv(e, 'nb.xml')], status: 2, words: [/999999 data blocks/, /pool resize/], code: 'E_INVALID', after: 'unchanged' },
  {
    name: 'restore of XML with a device the pool.json does not know: pool.json follows the metadata',
    setup: (e) => { e.copyPool('p-renum'); fs.writeFileSync(priv(e, 'renum.xml'), fs.readFileSync(e.xml, 'utf8').replace('dev_id="2"', 'dev_id="5"')); },
    args: (e) => ['restore', priv(e, 'p-renum'), '-i', priv(e, 'renum.xml'), '-q'], status: 0, words: [], pool: (e) => priv(e, 'p-renum'), after: 'clean',
    then: (e) => {
      const thins = JSON.parse(fs.readFileSync(path.join(priv(e, 'p-renum'), 'pool.json'), 'utf8')).thins;
      if (Object.keys(thins).sort().join() !== '1,5') throw new Error(`pool.json thins after the restore: ${JSON.stringify(thins)}`);
      thinsimOk(['thin', 'status', priv(e, 'p-renum'), '5']);
    },
  },
  { name: 'restore into a directory that does not exist', args: (e) => ['restore', path.join(e.missingDir, 'metadata'), '-i', e.xml], status: 1, words: [/does not exist/, /create it first/], code: 'E_NOT_FOUND' },
  { name: 'restore --metadata-size negative', args: (e) => ['restore', priv(e, 'm-neg'), '-i', e.xml, '--metadata-size', '-1M'], status: 2, words: [/--metadata-size/, /negative/], code: 'E_INVALID' },
  { name: 'check of a path that does not exist', args: (e) => ['check', e.missing], status: 1, words: [/does not exist/], code: 'E_NOT_FOUND' },
  { name: 'check of a file that is not metadata', args: (e) => ['check', e.file], status: 1, words: [/regular-file|superblock|metadata/] },
  { name: 'ls -m with no metadata snapshot held', args: (e) => ['ls', e.pool, '-m'], status: 1, words: [/no metadata snapshot/], code: 'E_NO_METADATA_SNAP', after: 'unchanged' },
  { name: 'dump of an empty directory', args: (e) => ['dump', e.emptyDir], status: 1, words: [/without a metadata file/], code: 'E_NOT_FOUND' },
  { name: 'dump --dev x', args: (e) => ['dump', e.pool, '--dev', 'x'], status: 2, words: [/--dev "x" is not a number/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'dump -f yaml', args: (e) => ['dump', e.pool, '-f', 'yaml'], status: 2, words: [/yaml/, /xml/], after: 'unchanged' },
  { name: 'ls -o an unknown field', args: (e) => ['ls', e.pool, '-o', 'DEV,NOPE'], status: 2, words: [/NOPE/], after: 'unchanged' },
  { name: 'delta --snap2 of an unknown device', args: (e) => ['delta', e.pool, '--snap1', '1', '--snap2', '9'], status: 1, words: [/device 9/], after: 'unchanged' },
  { name: 'delta --snap1 1.5', args: (e) => ['delta', e.pool, '--snap1', '1.5', '--snap2', '2'], status: 2, words: [/--snap1 1\.5 is not a whole number/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'delta without --snap2', args: (e) => ['delta', e.pool, '--snap1', '1'], status: 2, words: [/snap2/], after: 'unchanged' },

  // ---- serve ----------------------------------------------------------------------------------
  { name: 'serve --export with an id that is not a number', args: (e) => ['serve', e.pool, '--socket', priv(e, 'x.sock'), '--export', 'root=x'], status: 2, words: [/--export root=x/, /not a number/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'serve --export with an empty name', args: (e) => ['serve', e.pool, '--socket', priv(e, 'x.sock'), '--export', '=1'], status: 2, words: [/export name is empty/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'serve --max-connections 0', args: (e) => ['serve', e.pool, '--socket', priv(e, 'x.sock'), '--max-connections', '0'], status: 2, words: [/--max-connections 0 is out of range/], code: 'E_RANGE', after: 'unchanged' },
  { name: 'serve --socket over a regular file', args: (e) => ['serve', e.pool, '--socket', e.file], status: 2, words: [/exists and is not a socket/], code: 'E_INVALID', after: 'clean' },
  { name: 'serve --listen with a port beyond 65535', args: (e) => ['serve', e.pool, '--listen', 'localhost:99999'], status: 2, words: [/port must be 0\.\.65535/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'serve with both --listen and --socket', args: (e) => ['serve', e.pool, '--listen', '127.0.0.1:0', '--socket', priv(e, 'x.sock')], status: 2, words: [/mutually exclusive|conflict/i], after: 'unchanged' },

  // ---- layers, images, containers ----------------------------------------------------------------
  { name: 'layer stat of an unknown layer', args: (e) => ['layer', 'stat', e.pool, 'nosuch'], status: 1, words: [/no layer "nosuch"/, /layer ls/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'layer rm of an unknown layer', args: (e) => ['layer', 'rm', e.imagePool, 'nosuch'], status: 1, words: [/no layer "nosuch"/], code: 'E_NOT_FOUND', pool: (e) => e.imagePool, after: 'clean' },
  { name: 'layer synth --layers 1.5', args: (e) => ['layer', 'synth', e.pool, '--layers', '1.5'], status: 2, words: [/layers/, /whole number/], after: 'unchanged' },
  { name: 'layer synth --layers -3', args: (e) => ['layer', 'synth', e.pool, '--layers', '-3'], status: 2, words: [/layers/, /-3/], after: 'unchanged' },
  { name: 'layer prepare --min-free-space 150%', args: (e) => ['layer', 'prepare', e.pool, 'k', '--min-free-space', '150%'], status: 2, words: [/--min-free-space "150%"/, /0 to 99/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'layer prepare --base-size negative', args: (e) => ['layer', 'prepare', e.pool, 'k', '--base-size', '-1G'], status: 2, words: [/--base-size/, /negative/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'layer synth --layers 0', args: (e) => ['layer', 'synth', e.pool, '--layers', '0'], status: 2, words: [/--layers/, /at least 1/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'layer synth --new 150%', args: (e) => ['layer', 'synth', e.pool, '--layers', '2', '--new', '150%'], status: 2, words: [/--new/, /0 to 100/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'layer cat of an unknown layer', args: (e) => ['layer', 'cat', e.pool, 'nosuch', '/etc/hostname'], status: 1, words: [/no layer "nosuch"/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'image ls of a regular file', args: (e) => ['image', 'ls', e.file], status: 2, words: [/is a file, not a thinsim pool/], code: 'E_INVALID' },
  { name: 'image import of an archive that does not exist', args: (e) => ['image', 'import', e.pool, e.missing], status: 1, words: [/no-such-thing/], code: 'E_NOT_FOUND', after: 'unchanged' },
  { name: 'image import of a directory that is no image', args: (e) => ['image', 'import', e.pool, e.emptyDir], status: 2, words: [/neither a docker save archive/], code: 'E_INVALID', after: 'unchanged' },
  { name: 'image import of a file that is not a tar', args: (e) => ['image', 'import', e.pool, e.garbage], status: 2, words: [/not a tar archive|truncated/], code: 'E_PARSE', after: 'unchanged' },
  { name: 'image rm of an unknown image', args: (e) => ['image', 'rm', e.imagePool, 'nosuch:1'], status: 1, words: [/no image "nosuch:1"/], code: 'E_NOT_FOUND', pool: (e) => e.imagePool, after: 'clean' },
  { name: 'container rm of an unknown container', args: (e) => ['container', 'rm', e.imagePool, 'nosuch'], status: 1, words: [/no container "nosuch"/], code: 'E_NOT_FOUND', pool: (e) => e.imagePool, after: 'clean' },
  { name: 'container create from an unknown image', args: (e) => ['container', 'create', e.imagePool, 'nosuch:1', 'c1'], status: 1, words: [/no image "nosuch:1"/], code: 'E_NOT_FOUND', pool: (e) => e.imagePool, after: 'clean' },

  // ---- experiments and the command line itself ------------------------------------------------------
  { name: 'experiment that does not exist', args: () => ['experiment', 'nosuch'], status: 2, words: [/nosuch/, /experiment list/] },
  { name: 'experiment --size negative', args: () => ['experiment', 'block-size', '--size', '-1M'], status: 2, words: [/--size/, /negative/], code: 'E_INVALID' },
  { name: 'experiment --repeat 1.5', args: () => ['experiment', 'block-size', '--repeat', '1.5'], status: 2, words: [/--repeat 1\.5 is not a whole number/], code: 'E_INVALID' },
  { name: 'demo --dir an existing file', args: (e) => ['demo', '--dir', e.file], status: 2, words: [/--dir/, /not a directory/], code: 'E_INVALID' },
  { name: 'no command', args: () => [], status: 2, words: [/command/i] },
  { name: 'unknown command', args: () => ['frobnicate'], status: 2, words: [/frobnicate|Unknown/] },
  { name: 'unknown option', args: (e) => ['thin', 'status', e.pool, '1', '--bogus'], status: 2, words: [/bogus/], after: 'unchanged' },
];

