import * as fs from 'fs';
import type { CommandModule } from 'yargs';
import { ThinError } from '../../errors';
import { parseSize } from '../../units';
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
    if (a.input !== '-' && !fs.existsSync(a.input)) {
      throw new ThinError('E_NOT_FOUND', `input ${a.input} does not exist`, { file: a.input });
    }
    const madeDir = !fs.existsSync(a.pool);
    const target = restoreTarget(a.pool);
    let r;
    try {
      r = await restoreFile(target, a.input === '-' ? process.stdin : a.input, { metadataSize });
    } catch (e) {
      if (madeDir && target !== a.pool) fs.rmSync(a.pool, { recursive: true, force: true });
      throw e;
    }
    if (a.json) printJson(r);
    else if (!a.quiet) stderr(`restored ${r.devices} device(s), ${r.mappings} mapping(s) into ${r.path} (${r.metadataUsed} of ${r.metadataBlocks} metadata blocks used)\n`);
  },
};
