import {
  closeSync,
  constants,
  fstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContentReader } from '@backupforge/common';
import { alignedBuffer, DIRECT_ALIGN } from '@backupforge/common';
import { afterEach, describe, expect, it } from 'vitest';
import { prng } from '../testing/memory-fixtures.ts';
import { DirectFile, readerReads, sequentialReads } from './direct-read.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function file(bytes: Uint8Array): string {
  const d = mkdtempSync(join(tmpdir(), 'forge-direct-'));
  dirs.push(d);
  const p = join(d, 'f.bin');
  writeFileSync(p, bytes);
  return p;
}

const openFds = () => readdirSync('/proc/self/fd').length;

/** Whether this machine's temporary directory takes O_DIRECT at all (tmpfs before Linux 6.6 does not). */
function directSupported(): boolean {
  if (!constants.O_DIRECT) return false;
  try {
    closeSync(openSync(file(new Uint8Array(1)), constants.O_RDONLY | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  }
}

async function readAll(path: string, chunk: number, buffers = 2): Promise<Buffer> {
  const bufs = Array.from({ length: buffers }, () => alignedBuffer(chunk));
  const reads = sequentialReads(new DirectFile(openSync(path, 'r')), bufs, path);
  const parts: Buffer[] = [];
  for (;;) {
    const piece = await reads.next();
    if (piece.length === 0) break;
    parts.push(Buffer.from(piece));
  }
  await reads.close();
  return Buffer.concat(parts);
}

describe('direct reads', () => {
  it('read every byte of files of awkward sizes, in order, with 1 to 3 reads in flight', async () => {
    for (const buffers of [1, 2, 3]) {
      for (const size of [0, 1, 4095, 4096, 4097, 3 * 65536, 3 * 65536 + 7, 1024 * 1024 + 4096 * 3 + 1]) {
        const data = prng(size, size + 1);
        const got = await readAll(file(data), 64 * 1024, buffers);
        expect(`${buffers} ${size} ${got.equals(Buffer.from(data))}`).toBe(`${buffers} ${size} true`);
      }
    }
  });

  it("read a source's reader through two buffers, in order", async () => {
    const data = prng(300_001, 4);
    let pos = 0;
    let closed = false;
    const reader: ContentReader = {
      async read(buf) {
        const n = Math.min(buf.length, data.length - pos, 70_000); // short reads before the end too
        buf.set(data.subarray(pos, pos + n));
        pos += n;
        return n;
      },
      async close() {
        closed = true;
      },
    };
    const reads = readerReads(reader, [Buffer.alloc(100_000), Buffer.alloc(100_000)]);
    const parts: Buffer[] = [];
    for (let p = await reads.next(); p.length > 0; p = await reads.next()) parts.push(Buffer.from(p));
    await reads.close();
    expect(Buffer.concat(parts).equals(Buffer.from(data))).toBe(true);
    expect(closed).toBe(true);
  });

  it.runIf(directSupported())('go around the page cache into a page-aligned buffer', () => {
    const data = prng(3 * DIRECT_ALIGN + 100, 3);
    const f = new DirectFile(openSync(file(data), 'r'));
    expect(f.direct).toBe(true);
    const buf = alignedBuffer(4 * DIRECT_ALIGN);
    // aligned buffer, offset and length: stays direct (a misaligned buffer would be refused
    // with EINVAL and the file would fall back to buffered reads)
    expect(f.readSync(buf, 0, 4 * DIRECT_ALIGN, 0)).toBe(data.length);
    expect(f.direct).toBe(true);
    expect(f.directBytes).toBe(data.length);
    expect(Buffer.from(buf.subarray(0, data.length)).equals(Buffer.from(data))).toBe(true);
    f.close();
  });

  it('fall back to buffered reads, from the same offset, when a direct read is refused', async () => {
    const data = prng(5 * DIRECT_ALIGN, 9);
    const f = new DirectFile(openSync(file(data), 'r'));
    const buf = alignedBuffer(8 * DIRECT_ALIGN);
    expect(await f.read(buf, 0, DIRECT_ALIGN, 0)).toBe(DIRECT_ALIGN);
    const direct = f.directBytes;
    // an odd buffer offset: not a direct read, and the bytes are still right
    expect(await f.read(buf, 1, 2 * DIRECT_ALIGN, DIRECT_ALIGN)).toBe(2 * DIRECT_ALIGN);
    expect(
      Buffer.from(buf.subarray(1, 1 + 2 * DIRECT_ALIGN)).equals(
        Buffer.from(data.subarray(DIRECT_ALIGN, 3 * DIRECT_ALIGN)),
      ),
    ).toBe(true);
    expect(f.directBytes).toBe(direct);
    // a buffer not on a page boundary of its own (JS cannot see that): the kernel refuses the
    // direct read, and the same read is done buffered
    const plain = Buffer.from(new ArrayBuffer(2 * DIRECT_ALIGN));
    expect(f.readSync(plain, 0, 2 * DIRECT_ALIGN, 3 * DIRECT_ALIGN)).toBe(2 * DIRECT_ALIGN);
    expect(plain.equals(Buffer.from(data.subarray(3 * DIRECT_ALIGN)))).toBe(true);
    f.close();
  });

  it.runIf(directSupported())('fall back when the kernel refuses a buffer (EINVAL)', async () => {
    // Small ArrayBuffers come from malloc: 16-byte aligned, on a page boundary 1 time in 256.
    let fellBack = 0;
    for (let i = 0; i < 4; i++) {
      const data = prng(2 * DIRECT_ALIGN, 20 + i);
      const f = new DirectFile(openSync(file(data), 'r'));
      const plain = Buffer.from(new ArrayBuffer(2 * DIRECT_ALIGN));
      const n = i % 2 ? await f.read(plain, 0, plain.length, 0) : f.readSync(plain, 0, plain.length, 0);
      expect(n).toBe(data.length);
      expect(plain.equals(Buffer.from(data))).toBe(true);
      if (!f.direct) fellBack++;
      f.close();
    }
    expect(fellBack).toBeGreaterThan(0);
  });

  it('close both descriptors', async () => {
    const before = openFds();
    const path = file(prng(10_000, 1));
    const f = new DirectFile(openSync(path, 'r'));
    f.close();
    expect(openFds()).toBe(before);
    // A second close must not close a number the system has since given to another file.
    const other = openSync(path, 'r');
    f.close();
    expect(() => fstatSync(other)).not.toThrow();
    closeSync(other);
    const r = sequentialReads(
      new DirectFile(openSync(path, 'r')),
      [alignedBuffer(8192), alignedBuffer(8192)],
      path,
    );
    await r.next();
    await r.close(); // with the second read still in flight
    expect(openFds()).toBe(before);
  });

  it('name the file when a read fails', async () => {
    const d = mkdtempSync(join(tmpdir(), 'forge-direct-'));
    dirs.push(d);
    const r = sequentialReads(new DirectFile(openSync(d, 'r')), [alignedBuffer(8192)], d); // EISDIR on read
    await expect(r.next()).rejects.toThrow(d);
    await r.close();
  });
});
