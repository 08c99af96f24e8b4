import * as fs from 'fs';
import type { CommandModule } from 'yargs';
import { ThinError } from '../../errors';
import { parseSize } from '../../units';
import * as path from 'path';
import { FileDevice } from '../../io/file-device';
import { openedBy, PoolLock } from '../../pool/pool-lock';
import { loadTable, type PoolTable, resolveDev, saveTable, TABLE_FILE } from '../../pool/table';
import { ThinMetadata } from '../../thin/metadata';
import { SECTOR_SIZE } from '../../units';
import { inputFile } from '../args';
import { restoreTarget } from '../pool-path';
import { printJson, stderr } from '../output';

interface Args { pool: string; input: string; 'metadata-size': string; json?: boolean; quiet?: boolean }

export const restoreCommand: CommandModule<{}, Args> = {
  command: 'restore <pool>',
  describe: 'Write pool metadata from thin_dump XML (like thin_restore); nothing is written if the XML is bad',
  builder: (y) => y
    .positional('pool', { type: 'string', demandOption: true, describe: 'pool directory (writes <pool>/metadata) or metadata file' })
    .option('input', { alias: 'i', type: 'string', demandOption: true, describe: 'XML file to read ("-" for stdin)' })
    .option('metadata-size', { type: 'string', default: '2G', describe: 'size of a new metadata file (an existing one keeps its size)' })
    .option('json', { type: 'boolean', describe: 'print the result as JSON' })
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'print nothing on success' }),
  handler: async (a) => {
    const { restoreFile } = await import('../../thin/restore'); // loaded by the verb that needs it
    const metadataSize = parseSize(a['metadata-size'], '--metadata-size');
    if (a.input !== '-') inputFile(a.input, '--input');
    const { target, lockDir, madeDir } = restoreTarget(a.pool);
    let r;
    try {
      // Every writer holds the pool's lock: a server or another verb writing this pool
      // would otherwise commit over the restored metadata (or we over theirs).
      const lock = lockDir ? PoolLock.acquire(lockDir) : undefined;
      try {
        const holders = openedBy(target);
        if (holders.length > 0) {
          throw new ThinError('E_POOL_BUSY', `${target} is open in process ${holders.join(', ')}; stop it (a thinsim serve or another tool using this metadata) before restoring over it`, { file: target, pids: holders });
        }
        const poolDir = lockDir && fs.existsSync(path.join(lockDir, TABLE_FILE)) ? lockDir : undefined;
        if (poolDir && a.input !== '-') checkXmlFitsPool(a.input, poolDir);
        r = await restoreFile(target, a.input === '-' ? process.stdin : a.input, { metadataSize });
        if (poolDir) reconcileThinSizes(poolDir);
      } finally {
        lock?.release();
      }
    } catch (e) {
      if (madeDir) fs.rmSync(a.pool, { recursive: true, force: true });
      throw e;
    }
    if (a.json) printJson(r);
    else if (!a.quiet) stderr(`restored ${r.devices} device(s), ${r.mappings} mapping(s) into ${r.path} (${r.metadataUsed} of ${r.metadataBlocks} metadata blocks used)\n`);
  },
};

/**
 * Before a restore into a pool directory overwrites its metadata: the XML's superblock
 * must fit the pool, as the kernel requires of a pool table (the same data block size;
 * no more data blocks than the data device holds). Read from the XML's first 64 KiB,
 * where thin_dump puts the superblock element; an XML that has none there is left to
 * the restore itself to refuse.
 */
function checkXmlFitsPool(xml: string, dir: string): void {
  const fd = fs.openSync(xml, 'r');
  const head = Buffer.alloc(64 * 1024);
  let n: number;
  try { n = fs.readSync(fd, head, 0, head.length, 0); } finally { fs.closeSync(fd); }
  const sb = /<superblock\b([^>]*)>/.exec(head.subarray(0, n).toString('utf8'));
  if (!sb) return;
  const attr = (k: string) => { const m = new RegExp(`\\b${k}="(\\d+)"`).exec(sb[1]); return m ? Number(m[1]) : undefined; };
  const table = loadTable(dir);
  const file = path.join(dir, TABLE_FILE);
  const bs = attr('data_block_size');
  if (bs !== undefined && bs !== table.dataBlockSize) {
    throw new ThinError('E_INVALID', `${xml} uses a data block size of ${bs} sectors, but pool ${dir} uses ${table.dataBlockSize} (${file}): restore XML dumped from a pool with the same block size, or restore into a new directory`, { file: xml });
  }
  const blocks = attr('nr_data_blocks');
  const dataBytes = fs.statSync(resolveDev(dir, table.dataDev)).size;
  const have = Math.floor(dataBytes / (table.dataBlockSize * SECTOR_SIZE));
  if (blocks !== undefined && blocks > have) {
    throw new ThinError('E_INVALID', `${xml} describes ${blocks} data blocks, but the data device of pool ${dir} holds ${have}: grow it first (thinsim pool resize ${dir} --data-size ...) or restore into a new directory`, { file: xml });
  }
}

/**
 * After a restore into a pool directory, pool.json's thin sizes follow the new metadata:
 * entries for devices that are gone are dropped, and a device without one gets the data
 * device's size, as `pool create` does when it adopts metadata (thin_dump's XML carries
 * no virtual sizes). Run under the pool lock.
 */
function reconcileThinSizes(dir: string): void {
  const table = loadTable(dir);
  const dev = new FileDevice(resolveDev(dir, table.metadataDev), { readOnly: true });
  try {
    const md = ThinMetadata.open(dev);
    const ids = new Set(md.devices().map(String));
    const dataBytes = md.nrDataBlocks * md.dataBlockSize * SECTOR_SIZE;
    const thins: PoolTable['thins'] = {};
    for (const id of ids) thins[id] = table.thins[id] ?? { size: dataBytes };
    if (md.dataBlockSize !== table.dataBlockSize) {
      throw new ThinError('E_INVALID', `the restored metadata uses a data block size of ${md.dataBlockSize} sectors, but ${path.join(dir, TABLE_FILE)} says ${table.dataBlockSize}: restore XML made for this pool, or set dataBlockSize to ${md.dataBlockSize}`, { file: path.join(dir, TABLE_FILE) });
    }
    saveTable(dir, { ...table, thins });
  } finally {
    dev.close();
  }
}
