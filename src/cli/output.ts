/** Synchronous, complete writes to stdout/stderr (works for files, pipes and ttys; retries EAGAIN). */
import * as fs from 'fs';

export function writeFd(fd: number, s: string | Uint8Array): void {
  const buf = typeof s === 'string' ? Buffer.from(s) : s;
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      if ((e as NodeJS.ErrnoException).code === 'EPIPE') process.exit(0);
      throw e;
    }
  }
}

export const stdout = (s: string | Uint8Array): void => writeFd(1, s);
export const stderr = (s: string | Uint8Array): void => writeFd(2, s);

export function printJson(v: unknown): void {
  stdout(JSON.stringify(v, null, 2) + '\n');
}
