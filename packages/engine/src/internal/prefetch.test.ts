import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Prefetcher } from './prefetch.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Bytes this process (all its threads) has read with read(2) and friends. */
const bytesRead = () => Number(/rchar:\s*(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))![1]);

async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return cond();
}

describe('Prefetcher', () => {
  it('reads the files it is told of, past a FIFO and a symlink, without touching atime', async () => {
    const d = mkdtempSync(join(tmpdir(), 'forge-prefetch-'));
    dirs.push(d);
    const files = [0, 1, 2].map((i) => join(d, `f${i}`));
    for (const f of files) {
      writeFileSync(f, Buffer.alloc(200_000, 7));
      utimesSync(f, new Date('2001-01-01T00:00:00Z'), new Date('2002-02-02T00:00:00Z'));
    }
    execFileSync('mkfifo', [join(d, 'fifo')]);
    symlinkSync(files[0]!, join(d, 'link'));
    const p = new Prefetcher();
    try {
      const before = bytesRead();
      p.hint([join(d, 'fifo'), join(d, 'link'), join(d, 'missing'), ...files]);
      expect(await until(() => bytesRead() - before >= 3 * 200_000)).toBe(true);
    } finally {
      await p.close();
    }
    for (const f of files) expect(statSync(f).atime.toISOString()).toBe('2001-01-01T00:00:00.000Z');
  });

  it('stops reading what it was told of once closed', async () => {
    const d = mkdtempSync(join(tmpdir(), 'forge-prefetch-'));
    dirs.push(d);
    const files = Array.from({ length: 200 }, (_, i) => join(d, `f${i}`));
    for (const f of files) writeFileSync(f, Buffer.alloc(100_000, 1));
    const p = new Prefetcher();
    const before = bytesRead();
    p.hint(files);
    await p.close(); // at most the first few reads (in flight) still happen
    await new Promise((r) => setTimeout(r, 200));
    expect(bytesRead() - before).toBeLessThan(50 * 100_000);
  });

  it('does nothing for an empty hint and closes without having started', async () => {
    const p = new Prefetcher();
    p.hint([]);
    await p.close();
  });
});
