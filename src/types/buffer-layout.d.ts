// Minimal typings for buffer-layout 1.2 (the package ships none): only what thinsim uses.
declare module 'buffer-layout' {
  export class Layout<T = any> {
    constructor(span: number, property?: string);
    span: number;
    property?: string;
    decode(b: Buffer, offset?: number): T;
    encode(src: T, b: Buffer, offset?: number): number;
    getSpan(b?: Buffer, offset?: number): number;
  }
  export class Structure<T = any> extends Layout<T> {
    fields: Layout[];
    offsetOf(property: string): number | undefined;
  }
  export function struct<T = any>(fields: Layout[], property?: string, decodePrefixes?: boolean): Structure<T>;
  export function u8(property?: string): Layout<number>;
  export function u16(property?: string): Layout<number>;
  export function u32(property?: string): Layout<number>;
  export function blob(length: number, property?: string): Layout<Buffer>;
  export function seq<T>(elementLayout: Layout<T>, count: number, property?: string): Layout<T[]>;
}
