import { closeSync, constants, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DIRECT_WRITE_MIN, writeFileDirect } from './direct-write.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'forge-direct-write-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Whether this machine's temporary directory takes O_DIRECT at all (tmpfs before Linux 6.6 does not). */
async function directSupported(): Promise<boolean> {
  if (!constants.O_DIRECT) return false;
  const p = join(dir, 'probe');
  await writeFile(p, 'x');
  try {
    closeSync(openSync(p, constants.O_RDONLY | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  } finally {
    await rm(p);
  }
}

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    out[i] = x & 0xff;
  }
  return out;
}

describe('direct pack writes', () => {
  it('write every byte, the exact size and the mode, whatever the length', async () => {
    const direct = await directSupported();
    for (const n of [
      DIRECT_WRITE_MIN,
      DIRECT_WRITE_MIN + 1,
      4 * 1024 * 1024 + 4095,
      9 * 1024 * 1024,
      9 * 1024 * 1024 + 17,
    ]) {
      const data = bytes(n, n);
      const p = join(dir, `f${n}`);
      // Where the filesystem has direct I/O the file is written here; elsewhere nothing is created.
      expect(await writeFileDirect(p, data, 0o600)).toBe(direct);
      if (!direct) continue;
      const st = await stat(p);
      expect(st.size).toBe(n);
      expect(st.mode & 0o777).toBe(0o600);
      expect(Buffer.from(await readFile(p)).equals(Buffer.from(data))).toBe(true);
    }
  });

  it('leave small objects to the ordinary path, creating nothing', async () => {
    const p = join(dir, 'small');
    expect(await writeFileDirect(p, new Uint8Array(DIRECT_WRITE_MIN - 1), 0o600)).toBe(false);
    await expect(stat(p)).rejects.toThrow(/ENOENT/);
  });

  it('throw what a write throws: a missing directory, a name taken', async () => {
    const data = new Uint8Array(DIRECT_WRITE_MIN);
    await expect(writeFileDirect(join(dir, 'missing', 'f'), data, 0o600)).rejects.toMatchObject({
      code: 'ENOENT',
    });
    if (!(await directSupported())) return;
    await writeFile(join(dir, 'taken'), 'x');
    await expect(writeFileDirect(join(dir, 'taken'), data, 0o600)).rejects.toMatchObject({ code: 'EEXIST' });
  });
});
