/** The package version, read once from package.json (two levels above dist/src). */
import * as fs from 'fs';
import * as path from 'path';

function readVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      return JSON.parse(fs.readFileSync(path.join(__dirname, rel), 'utf8')).version;
    } catch { /* try the next */ }
  }
  return '0.0.0';
}

export const VERSION = readVersion();
