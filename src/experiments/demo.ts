/**
 * The demo: the story of Docker's devicemapper driver told on a real thinsim
 * pool. A loop-lvm pool with Docker's default sizes (sparse, so it costs almost
 * nothing), a base device, image layers as a chain of snapshots, two containers
 * on top, copy-on-write, a discard that gives space back to the host, and a full
 * check. Every number printed is read from the pool, not computed beside it.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Pool } from '../pool/pool';
import { dockerInfo } from '../pool/status-format';

export interface DemoOptions {
  dir?: string;
  keep?: boolean;
  log: (line: string) => void;
}

const MiB = 2 ** 20;

function pattern(seed: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < len; i += 4) { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; b.writeUInt32LE(s, i); }
  return b;
}

function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

export async function runDemo(opts: DemoOptions): Promise<{ dir: string; ok: boolean }> {
  const log = opts.log;
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-demo-'));
  const poolDir = path.join(dir, 'devicemapper');
  log(`1. A loop-lvm pool, as Docker makes in /var/lib/docker/devicemapper/devicemapper: sparse files of 100 GB data and 2 GB metadata`);
  const pool = Pool.create(poolDir, { lowWaterMark: 0 });
  const chunk = pool.chunkBytes;
  const dataFile = path.join(poolDir, 'data');
  log(`   ${poolDir}/data is ${fs.statSync(dataFile).size} bytes long but uses ${allocatedBytes(dataFile)} bytes on the host`);

  log(`2. The base device (id 1, 10 GiB), which every image starts from`);
  await pool.createThin(1, 10 * 2 ** 30);
  await pool.write(1, 0, pattern(1, 4 * MiB));

  log(`3. Image layers: each layer is a snapshot of the one below, with its own writes (O(1) to create)`);
  let parent = 1;
  for (let layer = 0; layer < 3; layer++) {
    const id = 10 + layer;
    await pool.createSnap(id, parent);
    await pool.write(id, (8 + layer * 4) * MiB, pattern(100 + layer, 2 * MiB));
    log(`   layer ${layer + 1}: thin device ${id} = snapshot of ${parent} + 2 MiB of new files`);
    parent = id;
  }

  log(`4. Two containers on the top layer; their first writes copy shared chunks (copy-on-write)`);
  await pool.createSnap(100, parent);
  await pool.createSnap(101, parent);
  const used0 = pool.status().usedDataBlocks;
  await pool.write(100, 1 * MiB + 5, Buffer.from('container 100 was here'));
  const used1 = pool.status().usedDataBlocks;
  await pool.write(101, 20 * MiB, pattern(7, 1 * MiB));
  const used2 = pool.status().usedDataBlocks;
  log(`   container 100 wrote 22 bytes into a shared ${chunk / 1024} KiB chunk: ${used1 - used0} new data block (the copy)`);
  log(`   container 101 wrote 1 MiB to unwritten space: ${used2 - used1} new data blocks`);
  const base = await pool.read(1, 1 * MiB, 22);
  const mine = await pool.read(100, 1 * MiB + 5, 22);
  log(`   base device still reads its own bytes there: ${base.equals(pattern(1, 4 * MiB).subarray(MiB, MiB + 22))}; container 100 reads "${mine.toString()}"`);

  await pool.flush();
  log(`5. Sharing, as thin_ls reports it (blocks of ${chunk / 1024} KiB):`);
  log(`   DEV  MAPPED  EXCLUSIVE  SHARED`);
  for (const d of pool.sharing()) {
    log(`   ${String(d.devId).padStart(3)}  ${String(d.mappedBlocks).padStart(6)}  ${String(d.exclusiveBlocks).padStart(9)}  ${String(d.mappedBlocks - d.exclusiveBlocks).padStart(6)}`);
  }

  log(`6. Removing container 101: discard its blocks first (Docker's dm.blkdiscard), then delete it`);
  const hostBefore = allocatedBytes(dataFile);
  await pool.discard(101, 0, pool.deviceSize(101));
  await pool.deleteDevice(101);
  log(`   host space used by the data file: ${hostBefore} -> ${allocatedBytes(dataFile)} bytes (passdown punched the freed chunks)`);

  log(`7. docker info, Storage Driver: devicemapper`);
  for (const [k, v] of dockerInfo(pool.status())) log(`   ${k}: ${v}`);
  log(`   dmsetup status: 0 ${pool.status().totalDataBlocks * pool.table.dataBlockSize} thin-pool ${pool.status().line}`);
  await pool.close();

  log(`8. Full metadata check (reference counts recomputed from every mapping)`);
  const report = Pool.check(poolDir);
  log(`   ${report.ok ? 'clean' : 'DAMAGED'}: ${report.devices} devices, ${report.mappings} mappings, ${report.findings.length} findings`);
  if (!opts.keep && !opts.dir) {
    fs.rmSync(dir, { recursive: true, force: true });
    log(`   (the pool was in a temporary directory; run "thinsim demo --keep" to keep it and inspect it)`);
  } else {
    log(`   the pool stays in ${poolDir}; try: thinsim pool status ${poolDir} ; thinsim ls ${poolDir} ; thin_check ${poolDir}/metadata`);
  }
  return { dir: poolDir, ok: report.ok };
}
