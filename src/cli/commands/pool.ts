import type { Argv, CommandModule } from 'yargs';
import type { Pool } from '../../pool/pool';
import type { PassdownError } from '../../pool/state';
import { dockerInfo, kernelFields } from '../../pool/status-format';
import { parseBlockSize, parseSize } from '../../units';
import { printJson, stderr, stdout } from '../output';
import { inputFile, wholeNumber } from '../args';
import { ThinError } from '../../errors';
import * as fs from 'fs';

/** The engine, loaded by the verbs that use it (the metadata verbs start faster without it). */
const loadPool = () => import('../../pool/pool');

/** Open read-write, run, close (which commits). Low-water warnings go to stderr. */
export async function withPool<T>(dir: string, fn: (p: Pool) => Promise<T>): Promise<T> {
  const { Pool } = await loadPool();
  const p = Pool.open(dir, { commitInterval: 0 });
  p.on('low-water-mark', (e: { free: number; lowWaterMark: number }) => stderr(`warning: pool ${dir} crossed its low-water mark: ${e.free} free data blocks (mark ${e.lowWaterMark})\n`));
  p.on('passdown-error', (e: PassdownError) => stderr(`warning: ${e.message}\n`));
  try {
    return await fn(p);
  } finally {
    await p.close();
  }
}

export async function withPoolReadOnly<T>(dir: string, fn: (p: Pool) => T | Promise<T>): Promise<T> {
  const { Pool } = await loadPool();
  const p = Pool.open(dir, { readOnly: true, commitInterval: 0 });
  try {
    return await fn(p);
  } finally {
    await p.close();
  }
}

/** `pool create`'s directory: new, or an existing directory (never a file). */
function poolDirectory(dir: string): void {
  let st: fs.Stats | undefined;
  try { st = fs.statSync(dir); } catch { return; /* absent: Pool.create makes it */ }
  if (!st.isDirectory()) {
    throw new ThinError('E_INVALID', `${dir} exists and is not a directory: a pool is a directory (data, metadata, pool.json); give a new path`, { file: dir });
  }
}

function table(rows: Array<[string, string]>, indent = ' '): string {
  return rows.map(([k, v]) => `${indent}${k}: ${v}\n`).join('');
}

const create: CommandModule<{}, any> = {
  command: 'create <dir>',
  describe: 'Create a pool directory (data, metadata, pool.json); adopts metadata that already holds a pool',
  builder: (y: Argv) => y
    .positional('dir', { type: 'string', demandOption: true })
    .option('data-size', { type: 'string', describe: 'data device size (default 100G, as Docker loop-lvm)' })
    .option('metadata-size', { type: 'string', describe: 'metadata device size (default 2G)' })
    .option('block-size', { type: 'string', default: '64K', describe: 'data block size: 64K..1G, a multiple of 64K' })
    .option('mode', { choices: ['loop-lvm', 'direct-lvm'], default: 'loop-lvm' })
    .option('data-dev', { type: 'string', describe: 'existing data file or block device' })
    .option('metadata-dev', { type: 'string', describe: 'existing metadata file or block device' })
    .option('low-water-mark', { type: 'string', default: 0, describe: 'free data blocks that trigger the low-water-mark event' })
    .option('no-zero', { type: 'boolean', describe: 'skip_block_zeroing: do not zero new chunks' })
    .option('discard', { choices: ['passdown', 'nopassdown', 'ignore'], default: 'passdown' })
    .option('error-if-no-space', { type: 'boolean', describe: 'fail writes at once when out of data space (default: queue for no_space_timeout)' })
    .option('no-space-timeout', { type: 'string', default: '60', describe: 'seconds queued writes wait for a resize' })
    .option('read-only', { type: 'boolean', describe: 'the read_only feature: the pool never changes after creation' })
    .option('json', { type: 'boolean' }),
  handler: async (a) => {
    const { Pool } = await loadPool();
    poolDirectory(a.dir);
    if (a['data-dev'] !== undefined) inputFile(a['data-dev'], '--data-dev');
    if (a['metadata-dev'] !== undefined) inputFile(a['metadata-dev'], '--metadata-dev');
    const lowWaterMark = wholeNumber(a['low-water-mark'], '--low-water-mark');
    const noSpaceTimeout = wholeNumber(a['no-space-timeout'], '--no-space-timeout');
    const p = Pool.create(a.dir, {
      dataSize: a['data-size'] !== undefined ? parseSize(a['data-size'], '--data-size') : undefined,
      metadataSize: a['metadata-size'] !== undefined ? parseSize(a['metadata-size'], '--metadata-size') : undefined,
      blockSize: parseBlockSize(a['block-size']),
      mode: a.mode, dataDev: a['data-dev'], metadataDev: a['metadata-dev'], lowWaterMark,
      zero: !a['no-zero'], discard: a.discard, errorIfNoSpace: a['error-if-no-space'], noSpaceTimeout,
      readOnly: a['read-only'],
    });
    const s = p.status();
    await p.close();
    if (a.json) printJson(s);
    else stdout(`created ${a.mode} pool ${a.dir}: ${s.totalDataBlocks} data blocks of ${s.dataBlockSize * 512 / 1024} KiB, ${s.totalMetadataBlocks} metadata blocks\n`);
  },
};

const status: CommandModule<{}, any> = {
  command: 'status <dir>',
  describe: "Show the kernel's pool status fields and docker info's devicemapper fields (read-only)",
  builder: (y: Argv) => y.positional('dir', { type: 'string', demandOption: true }).option('json', { type: 'boolean' }),
  handler: async (a) => {
    await withPoolReadOnly(a.dir, (p) => {
      const s = p.status();
      if (a.json) { printJson({ ...s, docker: Object.fromEntries(dockerInfo(s)) }); return; }
      stdout(`${a.dir}: thin-pool ${s.line}\n`);
      stdout(table(kernelFields(s), '  '));
      stdout(`Storage Driver: devicemapper (${s.backend})\n`);
      stdout(table(dockerInfo(s)));
      if (s.lockedBy) stdout(`(open read-write by pid ${s.lockedBy}; this is its last commit)\n`);
    });
  },
};

const resize: CommandModule<{}, any> = {
  command: 'resize <dir>',
  describe: 'Grow the data and/or metadata device (shrinking is refused)',
  builder: (y: Argv) => y.positional('dir', { type: 'string', demandOption: true })
    .option('data-size', { type: 'string' }).option('metadata-size', { type: 'string' })
    .check((a) => (a['data-size'] || a['metadata-size'] ? true : 'give --data-size and/or --metadata-size')),
  handler: async (a) => {
    await withPool(a.dir, async (p) => {
      await p.resize({
        dataSize: a['data-size'] !== undefined ? parseSize(a['data-size'], '--data-size') : undefined,
        metadataSize: a['metadata-size'] !== undefined ? parseSize(a['metadata-size'], '--metadata-size') : undefined,
      });
      stdout(`thin-pool ${p.status().line}\n`);
    });
  },
};

const message: CommandModule<{}, any> = {
  command: 'message <dir> <words..>',
  describe: 'Send a dm-thin pool message: create_thin N | create_snap N ORIGIN | delete N | set_transaction_id OLD NEW | reserve_metadata_snap | release_metadata_snap',
  builder: (y: Argv) => y.positional('dir', { type: 'string', demandOption: true }).positional('words', { type: 'string', array: true }),
  handler: async (a) => {
    await withPool(a.dir, (p) => p.message((a.words as unknown[]).map(String)));
  },
};

export const poolCommand: CommandModule = {
  command: 'pool',
  describe: 'Create, inspect, resize and message a thin pool',
  builder: (y: Argv) => y.command(create).command(status).command(resize).command(message).demandCommand(1, 'Name a pool command: create, status, resize or message.'),
  handler: () => undefined,
};
