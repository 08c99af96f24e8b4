import * as fs from 'fs';
import type { CommandModule } from 'yargs';
import { OfflineMetadata } from '../../thin/offline';
import { dumpMetadata } from '../../thin/dump';
import { HumanReadableWriter, JsonWriter, XmlWriter } from '../../thin/xml/writer';
import { openMetadataReadOnly, outputOutsidePool } from '../pool-path';
import { writeFd } from '../output';
import { openOutput, outputFile, thinId } from '../args';

interface Args { pool: string; 'metadata-snap'?: boolean; format: string; output?: string; dev?: string[]; 'skip-mappings'?: boolean }

export const dumpCommand: CommandModule<{}, Args> = {
  command: 'dump <pool>',
  describe: "Print the metadata as thin_dump's XML (or JSON, or human_readable), streaming",
  builder: (y) => y
    .positional('pool', { type: 'string', demandOption: true, describe: 'pool directory, metadata file or block device' })
    .option('metadata-snap', { alias: 'm', type: 'boolean', describe: 'dump the held metadata snapshot' })
    .option('format', { alias: 'f', choices: ['xml', 'json', 'human_readable'], default: 'xml' })
    .option('output', { alias: 'o', type: 'string', describe: 'write to a file instead of stdout' })
    .option('dev', { alias: 'dev-id', type: 'string', array: true, describe: 'only these device ids' })
    .option('skip-mappings', { type: 'boolean', describe: 'devices only, without their mappings' }),
  handler: (a) => {
    const devices = a.dev?.map((d) => thinId(d, '--dev'));
    if (a.output) outputOutsidePool(outputFile(a.output, '--output'), a.pool, '--output');
    const dev = openMetadataReadOnly(a.pool);
    let fd = 1;
    try {
      if (a.output) fd = openOutput(a.output, '--output');
      const md = OfflineMetadata.open(dev, { metadataSnap: a['metadata-snap'] });
      const out = (s: string) => writeFd(fd, s);
      const opts = { bytes: (b: Uint8Array) => writeFd(fd, b) };
      const sink = a.format === 'json' ? new JsonWriter(out, opts) : a.format === 'human_readable' ? new HumanReadableWriter(out, opts) : new XmlWriter(out, opts);
      dumpMetadata(md, sink, { devices, skipMappings: a['skip-mappings'] });
    } finally {
      dev.close();
      if (fd !== 1) fs.closeSync(fd);
    }
  },
};
