// Typings for tar-stream 3.1's header codec (tar-stream/headers.js, which @types/tar-stream
// does not cover): only what thinsim uses to index an uncompressed archive on disk.
declare module 'tar-stream/headers' {
  export interface DecodedHeader {
    name: string;
    mode: number;
    uid: number;
    gid: number;
    size: number;
    mtime: Date;
    type: string;
    linkname: string | null;
  }
  export function decode(buf: Buffer, filenameEncoding?: string, allowUnknownFormat?: boolean): DecodedHeader | null;
  export function decodePax(buf: Buffer): Record<string, string>;
  export function decodeLongPath(buf: Buffer, encoding?: string): string;
}
