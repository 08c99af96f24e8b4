import type { CommandModule } from 'yargs';
import { openMetadataReadOnly } from '../pool-path';
import { printJson, stderr, stdout } from '../output';

interface Args { pool: string; 'metadata-snap'?: boolean; json?: boolean; quiet?: boolean }

export const checkCommand: CommandModule<{}, Args> = {
  command: 'check <pool>',
  describe: 'Check metadata fully: structure, reference counts, mapped_blocks, data space map (exit 0 clean, 1 damaged)',
  builder: (y) => y
    .positional('pool', { type: 'string', demandOption: true, describe: 'pool directory, metadata file or block device' })
    .option('metadata-snap', { alias: 'm', type: 'boolean', describe: 'also require and report on the held metadata snapshot' })
    .option('json', { type: 'boolean', describe: 'print the report as JSON' })
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'print nothing; only the exit status' }),
  handler: async (a) => {
    const { checkMetadata } = await import('../../thin/check'); // loaded by the verb that needs it
    const dev = openMetadataReadOnly(a.pool);
    let report;
    try {
      report = checkMetadata(dev, { metadataSnap: a['metadata-snap'] });
    } finally {
      dev.close();
    }
    if (a.json) printJson(report);
    else if (!a.quiet) {
      for (const f of report.findings) {
        const where = [f.path, f.block !== undefined ? `block ${f.block}` : undefined].filter(Boolean).join(', ');
        stderr(`${f.severity}: ${f.message}${where ? ` (${where})` : ''}\n`);
      }
      if (report.transactionId !== undefined) stdout(`TRANSACTION_ID=${report.transactionId}\n`);
      if (report.metadataFree !== undefined) stdout(`METADATA_FREE_BLOCKS=${report.metadataFree}\n`);
      stderr(report.ok
        ? `clean: ${report.devices} device(s), ${report.mappings} mapping(s), data ${report.dataAllocated ?? '?'}/${report.dataBlocks ?? '?'} blocks used\n`
        : `damaged: ${report.findings.filter((f) => f.severity === 'error').length} error(s)\n`);
    }
    process.exitCode = report.ok ? 0 : 1;
  },
};
