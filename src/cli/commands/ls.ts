import type { CommandModule } from 'yargs';
import { OfflineMetadata } from '../../thin/offline';
import { lsDevices, lsRows } from '../../thin/device-usage';
import { DEFAULT_LS_FIELDS, formatLs, parseLsFields } from '../../thin/report/ls-format';
import { openMetadataReadOnly } from '../pool-path';
import { printJson, stdout } from '../output';

interface Args { pool: string; format?: string; headers: boolean; 'metadata-snap'?: boolean; json?: boolean }

export const lsCommand: CommandModule<{}, Args> = {
  command: 'ls <pool>',
  describe: "List thin devices with thin_ls's columns (DEV, MAPPED_BLOCKS, EXCLUSIVE_BLOCKS, SHARED_BLOCKS, ...)",
  builder: (y) => y
    .positional('pool', { type: 'string', demandOption: true, describe: 'pool directory, metadata file or block device' })
    .option('format', { alias: 'o', type: 'string', describe: `comma-separated fields (default ${DEFAULT_LS_FIELDS.join(',')})` })
    .option('headers', { type: 'boolean', default: true, describe: 'print the header row (--no-headers to omit)' })
    .option('metadata-snap', { alias: 'm', type: 'boolean', describe: 'list the held metadata snapshot' })
    .option('json', { type: 'boolean', describe: 'print the numbers as JSON' }),
  handler: (a) => {
    const fields = a.format ? parseLsFields(a.format) : DEFAULT_LS_FIELDS;
    const dev = openMetadataReadOnly(a.pool);
    try {
      const md = OfflineMetadata.open(dev, { metadataSnap: a['metadata-snap'] });
      if (a.json) printJson(lsDevices(md).map((d) => ({ ...d, sharedBlocks: d.mappedBlocks - d.exclusiveBlocks, dataBlockSize: md.dataBlockSize })));
      else stdout(formatLs(lsRows(md, fields), { fields, headers: a.headers, dataBlockSize: md.dataBlockSize }));
    } finally {
      dev.close();
    }
  },
};
