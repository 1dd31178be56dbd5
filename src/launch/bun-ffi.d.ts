// The part of Bun's `bun:ffi` that src/launch/sys.ts uses (Bun 1.4.5), declared here instead of
// pulling in @types/bun: the rest of src/ is typed against Node.

declare module 'bun:ffi' {
  type FFITypeName = 'i32' | 'u32' | 'i64' | 'u64' | 'ptr' | 'void';
  interface FFIFunction {
    readonly args: readonly FFITypeName[];
    readonly returns: FFITypeName;
  }
  type Pointer = number & { readonly __pointer: unique symbol };
  export function dlopen<Fns extends Record<string, FFIFunction>>(
    path: string,
    symbols: Fns,
  ): { symbols: { [K in keyof Fns]: (...args: (number | bigint | Pointer | null)[]) => number } };
  export function ptr(view: ArrayBufferView): Pointer;
  export const read: { i32(pointer: Pointer | number, offset?: number): number };
}
