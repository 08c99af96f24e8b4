import type { CommandModule } from 'yargs';
import * as fs from 'fs';
import { ThinError } from '../../errors';
import { stdout } from '../output';

export const demoCommand: CommandModule<{}, { dir?: string; keep?: boolean; synthetic?: boolean }> = {
  command: 'demo',
  describe: "Walk through Docker's devicemapper story on a real pool: an image imported as snapshot layers, containers, copy-on-write, docker info, space given back",
  builder: (y) => y.option('dir', { type: 'string', describe: 'where to build the pool (default: a temp dir, removed afterwards)' })
    .option('keep', { type: 'boolean', describe: 'keep the temp pool for inspection' })
    .option('synthetic', { type: 'boolean', describe: 'block-level synthetic layers even where ext4 could be mounted' }),
  handler: async (a) => {
    if (a.dir !== undefined && fs.existsSync(a.dir) && !fs.statSync(a.dir).isDirectory()) {
      throw new ThinError('E_INVALID', `--dir ${a.dir} exists and is not a directory: give a new or existing directory for the demo's pool`, { file: a.dir });
    }
    const { runDemo } = await import('../../experiments/demo'); // loaded by the verb that needs it
    const r = await runDemo({ dir: a.dir, keep: a.keep, synthetic: a.synthetic, log: (l) => stdout(l + '\n') });
    process.exitCode = r.ok ? 0 : 1;
  },
};
