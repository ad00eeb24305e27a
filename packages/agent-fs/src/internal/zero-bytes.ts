let zeros = new Uint8Array(0);

/** Whether `data` holds only zero bytes (a hole to leave in a sparse file). Uses memcmp. */
export function isAllZero(data: Uint8Array): boolean {
  if (data.length === 0) return true;
  if (data[0] !== 0 || data[data.length - 1] !== 0) return false;
  if (zeros.length < data.length) zeros = new Uint8Array(Math.max(data.length, 1 << 20));
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).equals(zeros.subarray(0, data.length));
}
