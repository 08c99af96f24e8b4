/**
 * A small pool with snapshots for the fuzzers, made with the CLI: origin 1 with data in
 * several chunks, snapshot 2 of it with its own writes, thin 3, snapshot 4 of snapshot 2,
 * and a held metadata snapshot (so its trees are live blocks too).
 */
import * as fs from 'node:fs';
import { thinsimOk } from '../helpers/cli';
import { randomBytes } from '../nbd/helpers';

export function smallPool(dir: string, scratch: string): string {
  thinsimOk(['pool', 'create', dir, '--data-size', '64M', '--metadata-size', '4M', '--block-size', '64K']);
  thinsimOk(['thin', 'create', dir, '1', '--size', '16M']);
  const write = (id: number, offset: number, len: number, seed: number) => {
    fs.writeFileSync(scratch, randomBytes(len, seed));
    thinsimOk(['thin', 'write', dir, String(id), '--offset', String(offset), '-i', scratch]);
  };
  write(1, 0, 256 * 1024, 1);
  write(1, 3 * 1024 * 1024 + 4096, 100_000, 2);
  thinsimOk(['thin', 'snap', dir, '2', '1']);
  write(2, 64 * 1024, 64 * 1024, 3);
  write(2, 8 * 1024 * 1024, 200_000, 4);
  thinsimOk(['thin', 'create', dir, '3', '--size', '8M']);
  write(3, 4096, 4096, 5);
  thinsimOk(['thin', 'snap', dir, '4', '2']);
  write(4, 0, 4096, 6);
  thinsimOk(['pool', 'message', dir, 'reserve_metadata_snap']);
  write(1, 12 * 1024 * 1024, 64 * 1024, 7);
  return dir;
}
