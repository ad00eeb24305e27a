import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createChunker } from '../chunker/index.ts';
import { blobId } from '../crypto/master-key.ts';
import { DEFAULT_CHUNKER } from '../format/config.ts';
import { prng } from '../testing/memory-fixtures.ts';
import { FileLane } from './file-lane.ts';

const PARAMS = { ...DEFAULT_CHUNKER, seed: '11'.repeat(32) };
const KEY = new Uint8Array(32).fill(7);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function file(bytes: Uint8Array): string {
  const d = mkdtempSync(join(tmpdir(), 'forge-lane-'));
  dirs.push(d);
  const p = join(d, 'f.bin');
  writeFileSync(p, bytes);
  return p;
}

const openFds = () => readdirSync('/proc/self/fd').length;
const settle = () => new Promise((r) => setTimeout(r, 50));

describe('FileLane', () => {
  it.each([
    ['buffered', false],
    ['direct', true],
  ])(
    'gives the ids the main thread would, segment after segment (with reads ahead, %s)',
    async (_, direct) => {
      const data = prng(20 * 1024 * 1024 + 12345, 11);
      const lane = new FileLane(file(data), PARAMS, KEY, direct);
      const ids: string[] = [];
      for (;;) {
        const step = await lane.step(undefined);
        for (let i = 0; i < step.count; i++)
          ids.push(Buffer.from(step.ids.subarray(32 * i, 32 * i + 32)).toString('hex'));
        if (step.finished) break;
        await settle(); // let the read ahead land, as it would between two messages
      }
      lane.close();
      const chunker = createChunker(PARAMS);
      const expected: string[] = [];
      let start = 0;
      while (start < data.length) {
        const cut = chunker.cut(data, start, data.length, true);
        expected.push(blobId(KEY, data.subarray(start, cut)).toString('hex'));
        start = cut;
      }
      expect(ids).toEqual(expected);
    },
  );

  it('closing while a read ahead is in flight closes the file once that read ends', async () => {
    const before = openFds();
    const lane = new FileLane(file(prng(24 * 1024 * 1024, 5)), PARAMS, KEY, true);
    await lane.step(undefined); // reads a segment and starts reading the next one ahead
    // the file, and a second descriptor of it for direct reads where the filesystem has them
    expect(openFds()).toBeGreaterThan(before);
    lane.close();
    await settle();
    expect(openFds()).toBe(before);
  });

  it('closing after a read ahead has ended closes the file at once', async () => {
    const before = openFds();
    const lane = new FileLane(file(prng(24 * 1024 * 1024, 6)), PARAMS, KEY, true);
    await lane.step(undefined);
    await settle(); // the read ahead lands, and is never taken
    lane.close();
    expect(openFds()).toBe(before);
  });
});
