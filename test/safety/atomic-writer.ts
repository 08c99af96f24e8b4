/**
 * A child for test/safety/interrupted.test.ts: `node atomic-writer.js write DIR` rewrites
 * DIR/record.json (writeAtomic) and DIR/sub/ (a directory built aside and renamed into
 * place, then the old one removed with removeDurable, as the layer records do) in a loop
 * until it is killed, printing "writing" once the loop runs. Loaded by `node --test`
 * without arguments, it does nothing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { removeDurable, writeAtomic } from '../../src/durable';

if (process.argv[2] === 'write') {
  const dir = process.argv[3];
  const body = 'x'.repeat(256 * 1024);
  process.stdout.write('writing\n');
  for (let n = 0; ; n++) {
    writeAtomic(path.join(dir, 'record.json'), JSON.stringify({ n, body }));
    const sub = path.join(dir, 'sub');
    const tmp = `${sub}.tmp-${process.pid}`;
    fs.mkdirSync(tmp, { mode: 0o700 });
    writeAtomic(path.join(tmp, 'n'), String(n));
    removeDurable(sub);
    fs.renameSync(tmp, sub);
  }
}
