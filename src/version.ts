/** The package version, read once from package.json (two levels above dist/src), and the line `thinsim --version` prints. */
import * as fs from 'fs';
import * as path from 'path';
import { describeHotPath } from './hot';

function readVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      return JSON.parse(fs.readFileSync(path.join(__dirname, rel), 'utf8')).version;
    } catch { /* try the next */ }
  }
  return '0.0.0';
}

export const VERSION = readVersion();

/** `thinsim 0.1.0 (native addon: native/thinsim.node)`, or `(TypeScript twins: <why>)`. */
export function versionLine(): string {
  return `thinsim ${VERSION} (${describeHotPath()})`;
}
