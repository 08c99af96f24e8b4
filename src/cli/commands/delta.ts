import type { CommandModule } from 'yargs';
import { OfflineMetadata } from '../../thin/offline';
import { deltaDevices, deltaRanges } from '../../thin/device-delta';
import { openMetadataReadOnly } from '../pool-path';
import { printJson, stdout } from '../output';
import { thinId } from '../args';

interface Args { pool: string; snap1: string; snap2: string; verbose?: boolean; 'metadata-snap'?: boolean; json?: boolean }

export const deltaCommand: CommandModule<{}, Args> = {
  command: 'delta <pool>',
  describe: "Show how two thin devices' mappings differ, in thin_delta's format",
  builder: (y) => y
    .positional('pool', { type: 'string', demandOption: true, describe: 'pool directory, metadata file or block device' })
    .option('snap1', { type: 'string', demandOption: true, describe: 'the left device id' })
    .option('snap2', { type: 'string', demandOption: true, describe: 'the right device id' })
    .option('verbose', { type: 'boolean', describe: 'list every range with its data blocks' })
    .option('metadata-snap', { alias: 'm', type: 'boolean', describe: 'read the held metadata snapshot' })
    .option('json', { type: 'boolean', describe: 'every stretch as JSON: kind, begin, leftData, rightData, length' }),
  handler: (a) => {
    const [left, right] = [thinId(a.snap1, '--snap1'), thinId(a.snap2, '--snap2')];
    const dev = openMetadataReadOnly(a.pool);
    try {
      const md = OfflineMetadata.open(dev, { metadataSnap: a['metadata-snap'] });
      if (a.json) printJson({ left, right, dataBlockSize: md.dataBlockSize, ranges: deltaRanges(md, left, right) });
      else deltaDevices(md, left, right, stdout, a.verbose, stdout);
    } finally {
      dev.close();
    }
  },
};
