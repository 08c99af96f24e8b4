/**
 * Bytes given as one buffer, or as several laid back to back (a gather list, as a socket
 * delivers a payload that spans reads). Views only: nothing here copies, except
 * `flatten` of more than one buffer.
 */

export type Bytes = Uint8Array | readonly Uint8Array[];

export function byteLength(b: Bytes): number {
  if (b instanceof Uint8Array) return b.length;
  let n = 0;
  for (const x of b) n += x.length;
  return n;
}

/** Bytes [from, from+len) of `b`, as views into it, in order (empty views left out). */
export function sliceBytes(b: Bytes, from: number, len: number): Uint8Array[] {
  if (b instanceof Uint8Array) return [b.subarray(from, from + len)];
  const out: Uint8Array[] = [];
  let skip = from;
  let left = len;
  for (const x of b) {
    if (left === 0) break;
    if (skip >= x.length) {
      skip -= x.length;
      continue;
    }
    const k = Math.min(x.length - skip, left);
    out.push(x.subarray(skip, skip + k));
    left -= k;
    skip = 0;
  }
  return out;
}

/** One buffer with the list's bytes: the buffer itself when there is only one, else a copy. */
export function flatten(list: readonly Uint8Array[]): Uint8Array {
  if (list.length === 1) return list[0];
  const out = new Uint8Array(byteLength(list));
  let at = 0;
  for (const x of list) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}
