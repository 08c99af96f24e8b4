import * as fs from 'fs';
import type { Argv, CommandModule } from 'yargs';
import { ioError } from '../../errors';
import { parseSize } from '../../units';
import { printJson, stdout, writeFd } from '../output';
import { withPool, withPoolReadOnly } from './pool';
import { inputFile, outputFile, thinId } from '../args';
import { outputOutsidePool } from '../pool-path';

/** `<dir> <id>`: the id is taken as text and checked by thinId (a whole number, 0..2^24-1). */
const dirId = (y: Argv) => y.positional('dir', { type: 'string', demandOption: true }).positional('id', { type: 'string', demandOption: true });
const size = (s: string | undefined, what: string) => (s === undefined ? undefined : parseSize(s, what));

/** The bytes to write: stdin, or a file (its own errors: missing, a directory, unreadable). */
function readInput(src: string): Buffer {
  if (src === '-') return fs.readFileSync(0);
  inputFile(src, '--input');
  try {
    return fs.readFileSync(src);
  } catch (e) {
    throw ioError('read --input', src, e);
  }
}

const create: CommandModule<{}, any> = {
  command: 'create <dir> <id>',
  describe: 'Create a thin device (create_thin) with a virtual size',
  builder: (y: Argv) => dirId(y).option('size', { type: 'string', demandOption: true, describe: 'virtual size, e.g. 10G' }),
  handler: (a) => {
    const id = thinId(a.id);
    const bytes = size(a.size, '--size')!;
    return withPool(a.dir, (p) => p.createThin(id, bytes));
  },
};

const snap: CommandModule<{}, any> = {
  command: 'snap <dir> <id> <origin>',
  describe: 'Snapshot a thin device (create_snap): O(1), shares the origin\'s mappings',
  builder: (y: Argv) => dirId(y).positional('origin', { type: 'string', demandOption: true }).option('size', { type: 'string', describe: "default: the origin's size" }),
  handler: (a) => {
    const [id, origin] = [thinId(a.id), thinId(a.origin, 'origin id')];
    const bytes = size(a.size, '--size');
    return withPool(a.dir, (p) => p.createSnap(id, origin, bytes));
  },
};

const del: CommandModule<{}, any> = {
  command: 'delete <dir> <id>',
  describe: 'Delete a thin device; blocks it alone used are freed',
  builder: dirId,
  handler: (a) => {
    const id = thinId(a.id);
    return withPool(a.dir, (p) => p.deleteDevice(id));
  },
};

const status: CommandModule<{}, any> = {
  command: 'status <dir> <id>',
  describe: 'Mapped sectors and highest mapped sector, as dmsetup status prints for a thin device',
  builder: (y: Argv) => dirId(y).option('json', { type: 'boolean' }),
  handler: (a) => {
    const id = thinId(a.id);
    return withPoolReadOnly(a.dir, (p) => {
      const s = p.thinStatus(id);
      if (a.json) printJson(s);
      else stdout(`0 ${s.size / 512} thin ${s.line}\n`);
    });
  },
};

const write: CommandModule<{}, any> = {
  command: 'write <dir> <id>',
  describe: 'Write bytes at an offset (any alignment); commits before exit',
  builder: (y: Argv) => dirId(y).option('offset', { type: 'string', default: '0' })
    .option('input', { alias: 'i', type: 'string', demandOption: true, describe: 'file, or - for stdin' }),
  handler: (a) => {
    const id = thinId(a.id);
    const offset = parseSize(a.offset, '--offset');
    const data = readInput(a.input);
    return withPool(a.dir, (p) => p.write(id, offset, data));
  },
};

const read: CommandModule<{}, any> = {
  command: 'read <dir> <id>',
  describe: 'Read bytes (unmapped ranges read as zeros)',
  builder: (y: Argv) => dirId(y).option('offset', { type: 'string', default: '0' }).option('length', { type: 'string', demandOption: true })
    .option('output', { alias: 'o', type: 'string', describe: 'file (default stdout)' }),
  handler: (a) => {
    const [id, offset, length] = [thinId(a.id), parseSize(a.offset, '--offset'), parseSize(a.length, '--length')];
    if (a.output) outputOutsidePool(outputFile(a.output, '--output'), a.dir, '--output');
    return withPoolReadOnly(a.dir, async (p) => {
      const buf = await p.read(id, offset, length);
      if (a.output) {
        try { fs.writeFileSync(a.output, buf); } catch (e) { throw ioError('write --output', a.output, e); }
      } else writeFd(1, buf);
    });
  },
};

const discard: CommandModule<{}, any> = {
  command: 'discard <dir> <id>',
  describe: 'Discard a range: whole chunks are unmapped (and punched with passdown), partial ones zeroed',
  builder: (y: Argv) => dirId(y).option('offset', { type: 'string', default: '0' }).option('length', { type: 'string', demandOption: true }),
  handler: (a) => {
    const [id, offset, length] = [thinId(a.id), parseSize(a.offset, '--offset'), parseSize(a.length, '--length')];
    return withPool(a.dir, (p) => p.discard(id, offset, length));
  },
};

const imp: CommandModule<{}, any> = {
  command: 'import <dir> <id> <image>',
  describe: 'Copy a raw image into a thin device; all-zero chunks stay unmapped',
  builder: (y: Argv) => dirId(y).positional('image', { type: 'string', demandOption: true }).option('json', { type: 'boolean' }),
  handler: (a) => {
    const [id, image] = [thinId(a.id), inputFile(a.image, 'image')];
    return withPool(a.dir, async (p) => {
      const { importImage } = await import('../../pool/image');
      const r = await importImage(p, id, image);
      if (a.json) printJson(r);
      else stdout(`imported ${r.bytes} bytes: ${r.written} chunks written, ${r.skippedZero} all-zero chunks left unmapped\n`);
    });
  },
};

const exp: CommandModule<{}, any> = {
  command: 'export <dir> <id> <file>',
  describe: 'Copy a thin device to a sparse raw file (only mapped, non-zero chunks are written)',
  builder: (y: Argv) => dirId(y).positional('file', { type: 'string', demandOption: true }).option('json', { type: 'boolean' }),
  handler: (a) => {
    const [id, file] = [thinId(a.id), outputOutsidePool(outputFile(a.file, 'export file'), a.dir, 'export file')];
    return withPoolReadOnly(a.dir, async (p) => {
      const { exportImage } = await import('../../pool/image');
      const r = await exportImage(p, id, file);
      if (a.json) printJson(r);
      else stdout(`exported ${r.bytes} bytes: ${r.written} of ${r.mappedChunks} mapped chunks written\n`);
    });
  },
};

export const thinCommand: CommandModule = {
  command: 'thin',
  describe: 'Thin devices: create, snapshot, delete, status, read/write/discard, import/export',
  builder: (y: Argv) => y.command(create).command(snap).command(del).command(status).command(write).command(read)
    .command(discard).command(imp).command(exp).demandCommand(1, 'Name a thin command: create, snap, delete, status, write, read, discard, import or export.'),
  handler: () => undefined,
};
