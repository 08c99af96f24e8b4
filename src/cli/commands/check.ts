import type { CommandModule } from 'yargs';
import * as fs from 'fs';
import * as path from 'path';
import { FileDevice } from '../../io/file-device';
import { loadTable, resolveDev, TABLE_FILE } from '../../pool/table';
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
      report = checkMetadata(dev, { metadataSnap: a['metadata-snap'], dataDevice: dataDeviceOf(a.pool) });
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

/** A pool directory's data device and its size (undefined for a bare metadata file). */
function dataDeviceOf(pool: string): { name: string; bytes: number } | undefined {
  if (!fs.statSync(pool).isDirectory() || !fs.existsSync(path.join(pool, TABLE_FILE))) return undefined;
  const name = resolveDev(pool, loadTable(pool).dataDev);
  if (!fs.existsSync(name)) return { name, bytes: 0 }; // reported as a data device of 0 bytes
  const dev = new FileDevice(name, { readOnly: true });
  try {
    return { name, bytes: dev.size() };
  } finally {
    dev.close();
  }
}
