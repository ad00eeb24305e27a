/** Splits a Linux `dev_t` into major and minor numbers (glibc's `gnu_dev_major/minor`). */
export function splitDeviceNumber(rdev: number | bigint): { major: bigint; minor: bigint } {
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return { major, minor };
}
