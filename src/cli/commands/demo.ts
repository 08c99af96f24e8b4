import type { CommandModule } from 'yargs';
import { stdout } from '../output';

export const demoCommand: CommandModule<{}, { dir?: string; keep?: boolean }> = {
  command: 'demo',
  describe: "Walk through Docker's devicemapper story on a real pool: layers as snapshots, containers, copy-on-write, discard, docker info",
  builder: (y) => y.option('dir', { type: 'string', describe: 'where to build the pool (default: a temp dir, removed afterwards)' })
    .option('keep', { type: 'boolean', describe: 'keep the temp pool for inspection' }),
  handler: async (a) => {
    const { runDemo } = await import('../../experiments/demo'); // loaded by the verb that needs it
    const r = await runDemo({ dir: a.dir, keep: a.keep, log: (l) => stdout(l + '\n') });
    process.exitCode = r.ok ? 0 : 1;
  },
};
