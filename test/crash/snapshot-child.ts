/**
 * Child process of the snapshot scenario: opens the pool read-write and, until killed,
 * creates snapshots (of origins and of snapshots), deletes devices (origins that have
 * snapshots included), writes to them and flushes, seeded. Before each operation it
 * appends `S {op}` to a journal file and after it `E`, with a synchronous write(2): a
 * SIGKILL cannot lose a line the kernel took, so the parent knows every operation that
 * may have started (stdout to a pipe can be asynchronous in Node and lose lines).
 *
 * argv: pool-dir seed first-free-id live-ids(comma list) device-size journal-file first-tag
 */
import * as fs from 'node:fs';
import { Pool } from '../../src/pool/pool';
import { Rand } from '../../support/random';
import { fillPattern, SECTOR } from './model';

async function main(): Promise<void> {
  const [dir, seedArg, nextArg, liveArg, sizeArg, journal, tagArg] = process.argv.slice(2);
  const fd = fs.openSync(journal, 'a');
  const r = new Rand(Number(seedArg));
  let next = Number(nextArg);
  const live = liveArg.split(',').filter(Boolean).map(Number);
  const size = Number(sizeArg);
  const pool = Pool.open(dir, { commitInterval: r.pick([0, 200]) });
  let tag = Number(tagArg);
  const say = (o: object) => fs.writeSync(fd, `S ${JSON.stringify(o)}\n`);
  const done = () => fs.writeSync(fd, 'E\n');
  process.stdout.write('ready\n');
  for (;;) {
    const kind = live.length === 0 ? 'thin' : r.weighted({ snap: 25, delete: live.length > 1 ? 18 : 0, write: 30, flush: 20, thin: live.length < 3 ? 5 : 0 });
    if (kind === 'thin') {
      const id = next++;
      say({ op: 'thin', id, size });
      await pool.createThin(id, size);
      live.push(id);
    } else if (kind === 'snap') {
      const id = next++;
      const origin = r.pick(live);
      say({ op: 'snap', id, origin });
      await pool.createSnap(id, origin);
      live.push(id);
    } else if (kind === 'delete') {
      const id = r.pick(live);
      say({ op: 'delete', id });
      await pool.deleteDevice(id);
      live.splice(live.indexOf(id), 1);
    } else if (kind === 'flush') {
      say({ op: 'flush' });
      await pool.flush();
    } else {
      const id = r.pick(live);
      const first = r.int(size / SECTOR - 1);
      const n = 1 + r.int(Math.min(256, size / SECTOR - first) - 1);
      const t = ++tag;
      say({ op: 'write', id, offset: first * SECTOR, length: n * SECTOR, tag: t });
      await pool.write(id, first * SECTOR, fillPattern(Buffer.alloc(n * SECTOR), t, first));
    }
    done();
  }
}

// Loaded by `node --test` without arguments (it lives under test/), it does nothing.
if (process.argv.length > 2) {
  main().catch((e) => {
    process.stderr.write(`snapshot-child: ${(e as Error)?.stack ?? e}\n`);
    process.exitCode = 1;
  });
}
