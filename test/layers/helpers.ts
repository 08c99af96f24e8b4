/** Shared by the layer suites: can this machine mount layers, and assertion helpers. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { mountsUnder } from '../../src/mounts';
import { findTool } from '../../src/tools';

/** Why this machine cannot mount layers, or undefined. */
export function mountSkipReason(fsType: 'ext4' | 'xfs' = 'ext4'): string | undefined {
  const need = ['nbdfuse', 'fusermount3', 'e2fsck', 'blkid', fsType === 'xfs' ? 'mkfs.xfs' : 'mkfs.ext4'];
  for (const tool of need) if (!findTool(tool)) return `${tool} not installed`;
  if (!fs.existsSync('/dev/fuse')) return '/dev/fuse is missing';
  const root = process.getuid?.() === 0 && fs.existsSync('/dev/loop-control');
  if (!root && fsType === 'xfs') return 'mounting xfs needs root and loop devices';
  if (!root && !findTool('fuse2fs')) return 'neither root with loop devices nor fuse2fs';
  return undefined;
}

/**
 * Each test file runs in its own process; its mounts go under a temporary directory of its
 * own (os.tmpdir() follows TMPDIR), so "no mount is left behind" counts this file's mounts
 * only, not those of a suite running beside it.
 */
const PRIVATE_TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'thinsim-test-'));
process.env.TMPDIR = PRIVATE_TMP;
process.on('exit', () => {
  // Never remove through a mount that was left behind (the assertions report it).
  if (mountsUnder(PRIVATE_TMP).length === 0) fs.rmSync(PRIVATE_TMP, { recursive: true, force: true });
});

export function ours(): string[] {
  return mountsUnder(PRIVATE_TMP).filter((m) => m.includes('thinsim-dev-'));
}

/** Assert that `p` (or the thunk) fails with ThinError code `code` (and a message matching `re`). */
export async function expectCode(p: Promise<unknown> | (() => unknown), code: string, re?: RegExp): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    assert.equal((e as { code?: string }).code, code, String(e));
    if (re) assert.match((e as Error).message, re);
    return;
  }
  assert.fail(`expected ${code}`);
}

