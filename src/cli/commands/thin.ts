import * as fs from 'fs';
import type { Argv, CommandModule } from 'yargs';
import { ThinError } from '../../errors';
import { parseSize } from '../../units';
import { printJson, stdout, writeFd } from '../output';
import { withPool, withPoolReadOnly } from './pool';

const dirId = (y: Argv) => y.positional('dir', { type: 'string', demandOption: true }).positional('id', { type: 'number', demandOption: true });
const size = (s: string | undefined, what: string) => (s === undefined ? undefined : parseSize(s, what));

function readInput(src: string): Buffer {
  try {
    return src === '-' ? fs.readFileSync(0) : fs.readFileSync(src);
  } catch (e) {
    throw new ThinError('E_NOT_FOUND', `cannot read ${src}: ${(e as Error).message}`, { file: src });
  }
}

const create: CommandModule<{}, any> = {
  command: 'create <dir> <id>',
  describe: 'Create a thin device (create_thin) with a virtual size',
  builder: (y: Argv) => dirId(y).option('size', { type: 'string', demandOption: true, describe: 'virtual size, e.g. 10G' }),
  handler: (a) => withPool(a.dir, (p) => p.createThin(a.id, size(a.size, '--size')!)),
};

const snap: CommandModule<{}, any> = {
  command: 'snap <dir> <id> <origin>',
  describe: 'Snapshot a thin device (create_snap): O(1), shares the origin\'s mappings',
  builder: (y: Argv) => dirId(y).positional('origin', { type: 'number', demandOption: true }).option('size', { type: 'string', describe: "default: the origin's size" }),
  handler: (a) => withPool(a.dir, (p) => p.createSnap(a.id, a.origin, size(a.size, '--size'))),
};

const del: CommandModule<{}, any> = {
  command: 'delete <dir> <id>',
  describe: 'Delete a thin device; blocks it alone used are freed',
  builder: dirId,
  handler: (a) => withPool(a.dir, (p) => p.deleteDevice(a.id)),
};

const status: CommandModule<{}, any> = {
  command: 'status <dir> <id>',
  describe: 'Mapped sectors and highest mapped sector, as dmsetup status prints for a thin device',
  builder: (y: Argv) => dirId(y).option('json', { type: 'boolean' }),
  handler: (a) => withPoolReadOnly(a.dir, (p) => {
    const s = p.thinStatus(a.id);
    if (a.json) printJson(s);
    else stdout(`0 ${s.size / 512} thin ${s.line}\n`);
  }),
};

const write: CommandModule<{}, any> = {
  command: 'write <dir> <id>',
  describe: 'Write bytes at an offset (any alignment); commits before exit',
  builder: (y: Argv) => dirId(y).option('offset', { type: 'string', default: '0' })
    .option('input', { alias: 'i', type: 'string', demandOption: true, describe: 'file, or - for stdin' }),
  handler: (a) => withPool(a.dir, async (p) => {
    const data = readInput(a.input);
    await p.write(a.id, parseSize(a.offset, '--offset'), data);
  }),
};

const read: CommandModule<{}, any> = {
  command: 'read <dir> <id>',
  describe: 'Read bytes (unmapped ranges read as zeros)',
  builder: (y: Argv) => dirId(y).option('offset', { type: 'string', default: '0' }).option('length', { type: 'string', demandOption: true })
    .option('output', { alias: 'o', type: 'string', describe: 'file (default stdout)' }),
  handler: (a) => withPoolReadOnly(a.dir, async (p) => {
    const buf = await p.read(a.id, parseSize(a.offset, '--offset'), parseSize(a.length, '--length'));
    if (a.output) fs.writeFileSync(a.output, buf);
    else writeFd(1, buf);
  }),
};

const discard: CommandModule<{}, any> = {
  command: 'discard <dir> <id>',
  describe: 'Discard a range: whole chunks are unmapped (and punched with passdown), partial ones zeroed',
  builder: (y: Argv) => dirId(y).option('offset', { type: 'string', default: '0' }).option('length', { type: 'string', demandOption: true }),
  handler: (a) => withPool(a.dir, (p) => p.discard(a.id, parseSize(a.offset, '--offset'), parseSize(a.length, '--length'))),
};

const imp: CommandModule<{}, any> = {
  command: 'import <dir> <id> <image>',
  describe: 'Copy a raw image into a thin device; all-zero chunks stay unmapped',
  builder: (y: Argv) => dirId(y).positional('image', { type: 'string', demandOption: true }).option('json', { type: 'boolean' }),
  handler: (a) => withPool(a.dir, async (p) => {
    const { importImage } = await import('../../pool/image');
    const r = await importImage(p, a.id, a.image);
    if (a.json) printJson(r);
    else stdout(`imported ${r.bytes} bytes: ${r.written} chunks written, ${r.skippedZero} all-zero chunks left unmapped\n`);
  }),
};

const exp: CommandModule<{}, any> = {
  command: 'export <dir> <id> <file>',
  describe: 'Copy a thin device to a sparse raw file (only mapped, non-zero chunks are written)',
  builder: (y: Argv) => dirId(y).positional('file', { type: 'string', demandOption: true }).option('json', { type: 'boolean' }),
  handler: (a) => withPoolReadOnly(a.dir, async (p) => {
    const { exportImage } = await import('../../pool/image');
    const r = await exportImage(p, a.id, a.file);
    if (a.json) printJson(r);
    else stdout(`exported ${r.bytes} bytes: ${r.written} of ${r.mappedChunks} mapped chunks written\n`);
  }),
};

export const thinCommand: CommandModule = {
  command: 'thin <command>',
  describe: 'Thin devices: create, snapshot, delete, status, read/write/discard, import/export',
  builder: (y: Argv) => y.command(create).command(snap).command(del).command(status).command(write).command(read)
    .command(discard).command(imp).command(exp).demandCommand(1),
  handler: () => undefined,
};
