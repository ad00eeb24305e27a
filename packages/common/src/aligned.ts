// Page-aligned buffers, for direct I/O (O_DIRECT): the kernel then moves data between the disk
// and the buffer itself, without a copy through the page cache, but only when the buffer's
// address, the file offset and the length are multiples of the device's block size.

/** Alignment that satisfies direct I/O on 512-byte and 4 KiB-sector devices alike. */
export const DIRECT_ALIGN = 4096;

const WASM_PAGE = 65536;
/** The one WebAssembly API used here (the type libraries in use do not declare WebAssembly). */
const wasm = (
  globalThis as unknown as {
    WebAssembly?: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } };
  }
).WebAssembly;

/**
 * A buffer of `size` bytes whose first byte is page-aligned: WebAssembly memory is mapped page
 * by page. Falls back to an ordinary buffer where WebAssembly memory cannot be had (direct I/O
 * into it is then refused with EINVAL, and callers go on buffered).
 */
export function alignedBuffer(size: number): Buffer {
  const pages = Math.max(1, Math.ceil(size / WASM_PAGE));
  try {
    if (wasm) return Buffer.from(new wasm.Memory({ initial: pages, maximum: pages }).buffer, 0, size);
  } catch {
    // no more address space for WebAssembly memories: an ordinary buffer below
  }
  return Buffer.allocUnsafeSlow(size);
}
