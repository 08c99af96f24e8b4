/**
 * Image import/export for thin devices, sparse-aware both ways: an all-zero chunk
 * of the input is never provisioned (and unmaps a chunk mapped before), and an
 * export writes only mapped, non-zero chunks into a sparse output file.
 */
import * as fs from 'fs';
import { promisify } from 'util';
import { ioError, ThinError } from '../errors';
import { hot } from '../hot';
import type { Pool } from './pool';

const pread = promisify(fs.read);
const pwrite = promisify(fs.write);

export interface ImportResult { bytes: number; chunks: number; written: number; skippedZero: number }

export async function importImage(pool: Pool, id: number, file: string, onProgress?: (done: number, total: number) => void): Promise<ImportResult> {
  let fd: number;
  try { fd = fs.openSync(file, 'r'); } catch (e) { throw ioError('open image', file, e); }
  try {
    const size = fs.fstatSync(fd).size;
    const devSize = pool.deviceSize(id);
    if (size > devSize) {
      throw new ThinError('E_INVALID', `image ${file} is ${size} bytes, larger than thin device ${id} (${devSize} bytes); create the device with --size ${size} or more`, { file, device: id });
    }
    const cb = pool.chunkBytes;
    const res: ImportResult = { bytes: size, chunks: 0, written: 0, skippedZero: 0 };
    const inflight: Promise<void>[] = [];
    for (let off = 0; off < size; off += cb) {
      const len = Math.min(cb, size - off);
      const buf = Buffer.allocUnsafe(len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await pread(fd, buf, got, len - got, off + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      buf.fill(0, got);
      res.chunks++;
      if (hot.isZero(buf)) {
        res.skippedZero++;
        if (len === cb && pool.lookup(id, off / cb)) inflight.push(pool.discard(id, off, len));
      } else {
        res.written++;
        inflight.push(pool.write(id, off, buf));
      }
      // Keep a bounded number of chunks in flight.
      if (inflight.length >= 16) await Promise.all(inflight.splice(0));
      onProgress?.(off + len, size);
    }
    await Promise.all(inflight);
    await pool.flush();
    return res;
  } finally {
    fs.closeSync(fd);
  }
}

export interface ExportResult { bytes: number; mappedChunks: number; written: number }

export async function exportImage(pool: Pool, id: number, file: string): Promise<ExportResult> {
  const size = pool.deviceSize(id);
  const cb = pool.chunkBytes;
  let fd: number;
  try { fd = fs.openSync(file, 'w'); } catch (e) { throw ioError('create', file, e); }
  try {
    fs.ftruncateSync(fd, size);
    const res: ExportResult = { bytes: size, mappedChunks: 0, written: 0 };
    const vblocks: number[] = [];
    for (const run of pool.blockStatus(id, 0, size)) {
      if (!run.mapped) continue;
      for (let v = run.offset / cb; v * cb < run.offset + run.length; v++) vblocks.push(v);
    }
    for (const v of vblocks) {
      res.mappedChunks++;
      const len = Math.min(cb, size - v * cb);
      const buf = await pool.read(id, v * cb, len);
      if (hot.isZero(buf)) continue;
      let done = 0;
      while (done < len) done += (await pwrite(fd, buf, done, len - done, v * cb + done)).bytesWritten;
      res.written++;
    }
    fs.fsyncSync(fd);
    return res;
  } catch (e) {
    if (e instanceof ThinError) throw e;
    throw ioError('export to', file, e);
  } finally {
    fs.closeSync(fd);
  }
}
