import { Readable } from 'node:stream';
import { isForgeError } from '@backupforge/common';
import { describe, expect, it } from 'vitest';
import { collect, entriesOf, readAll } from './internal/test-support.ts';
import { createStdinSource } from './stdin-source.ts';

describe('createStdinSource', () => {
  it('yields one file entry whose reader hands out the stream in caller-sized pieces', async () => {
    const chunks = [Buffer.alloc(10_000, 1), Buffer.from('tail'), Buffer.alloc(0), Buffer.alloc(3, 2)];
    const source = createStdinSource({
      filename: 'db.sql',
      stream: Readable.from(chunks),
      now: () => 1_700_000_000_123,
    });
    expect(source.kind).toBe('stdin');
    expect(source.paths).toEqual(['/db.sql']);
    const events = await collect(source);
    expect(events).toHaveLength(1);
    const [entry] = entriesOf(events);
    expect(entry?.path).toEqual(['db.sql']);
    expect(entry?.meta).toMatchObject({
      type: 'file',
      mode: 0o644,
      size: 0,
      mtimeNs: 1_700_000_000_123_000_000n,
      uid: process.getuid?.(),
      gid: process.getgid?.(),
    });
    const content = await readAll(entry as NonNullable<typeof entry>, 777);
    expect(content.equals(Buffer.concat(chunks))).toBe(true);
  });

  it('fills whole buffers across chunk boundaries and returns 0 at the end', async () => {
    const source = createStdinSource({
      filename: 'x',
      stream: Readable.from([Buffer.from('abc'), Buffer.from('defgh')]),
    });
    const [entry] = entriesOf(await collect(source));
    const reader = await (entry?.open?.() ?? Promise.reject(new Error('no open')));
    const buf = new Uint8Array(4);
    expect(await reader.read(buf)).toBe(4);
    expect(Buffer.from(buf).toString()).toBe('abcd');
    expect(await reader.read(buf)).toBe(4);
    expect(Buffer.from(buf).toString()).toBe('efgh');
    expect(await reader.read(buf)).toBe(0);
    await reader.close();
    await reader.close();
    await expect(entry?.open?.()).rejects.toSatisfy((e: unknown) => isForgeError(e, 'FORGE_USAGE'));
  });

  it('rejects file names that are not plain names', () => {
    for (const filename of ['', '.', '..', 'a/b']) {
      expect(() => createStdinSource({ filename, stream: Readable.from([]) })).toThrow(
        expect.objectContaining({ code: 'FORGE_USAGE' }),
      );
    }
  });
});
