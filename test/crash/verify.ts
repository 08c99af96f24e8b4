/**
 * The checks after every crash point, shared by the farm's scenarios:
 * - the pool opens (read-only, as `thinsim status` would);
 * - `thinsim check` (checkMetadata, in-process) and thin_check 0.9 and 1.1 (the real
 *   tools, when installed) pass on the metadata;
 * - every device of the model reads back as the model allows (model.ts).
 * Returns the failures, empty when the point passed. With `rebaseAt`, what each device
 * holds becomes the model's durable base for the next point (scenarios that carry on
 * with the same pool after a crash).
 */
import * as path from 'node:path';
import { FileDevice } from '../../src/io/file-device';
import { Pool } from '../../src/pool/pool';
import { checkMetadata } from '../../src/thin/check';
import { tools09, tools1x } from '../../support/oracle-tools';
import type { DiskModel } from './model';

const oracles = [tools1x(), tools09()].filter((t) => t !== undefined);

export function oracleNames(): string[] {
  return oracles.map((t) => `thin_check ${t!.version}`);
}

export async function verifyPool(dir: string, model: DiskModel, p: number, opts: { rebaseAt?: number } = {}): Promise<string[]> {
  const metadataFile = path.join(dir, 'metadata');
  const fails: string[] = [];
  for (const t of oracles) {
    const r = t!.check(metadataFile);
    if (r.status !== 0) fails.push(`thin_check ${t!.version} exited ${r.status}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  }
  const dev = new FileDevice(metadataFile, { readOnly: true });
  try {
    const report = checkMetadata(dev);
    if (!report.ok) fails.push(`thinsim check: ${report.findings.filter((f) => f.severity === 'error').slice(0, 3).map((f) => f.message).join(' | ')}`);
  } catch (e) {
    fails.push(`thinsim check threw: ${(e as Error).message}`);
  } finally {
    dev.close();
  }
  let pool: Pool;
  try {
    pool = Pool.open(dir, { readOnly: true, commitInterval: 0 });
  } catch (e) {
    fails.push(`the pool does not open: ${(e as Error).message}`);
    return fails;
  }
  try {
    for (const id of model.ids()) {
      let content: Buffer | undefined;
      const read = async (size: number) => { content = pool.hasDevice(id) ? await pool.read(id, 0, size) : undefined; };
      await read(model.size(id));
      fails.push(...model.verify(id, p, () => content));
      if (opts.rebaseAt !== undefined) model.rebase(id, content, opts.rebaseAt);
    }
  } catch (e) {
    fails.push(`reading the devices failed: ${(e as Error).message}`);
  } finally {
    await pool.close();
  }
  return fails;
}
