import { readdirSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SourceEvent } from '@backupforge/common';
import { afterEach, describe, expect, it } from 'vitest';
import { removeTempDirs, tempDir, walkRequest } from './test-support.ts';
import { walkOnWorker } from './walk-client.ts';
import { runWalk } from './walk-run.ts';

afterEach(removeTempDirs);

const threads = () => readdirSync('/proc/self/task').length;

/**
 * What an event says, without the `open` function a file entry carries and without atime (the
 * first walk's directory listings update the directories' atime).
 */
function shape(ev: SourceEvent): unknown {
  if (ev.kind !== 'entry') return ev;
  const { open, meta, ...rest } = ev;
  const { atimeNs: _, ...kept } = meta;
  return { ...rest, meta: kept, opens: typeof open };
}

async function wideTree(): Promise<string> {
  const root = await tempDir();
  // More than a few batches of events (256 each), in several directories, with names that sort
  // differently in UTF-8 and UTF-16, a symlink, an excluded directory and an unreadable link.
  for (let d = 0; d < 6; d++) {
    const dir = join(root, `dir${d}`);
    await mkdir(dir);
    for (let f = 0; f < 300; f++)
      await writeFile(join(dir, `f${f}-\uFF5A${f % 3 ? '\u{1F600}' : ''}`), `${d}/${f}`);
  }
  await mkdir(join(root, 'skip'));
  await writeFile(join(root, 'skip', 'x'), 'x');
  await symlink('dir0/f1', join(root, 'link'));
  return root;
}

describe('walkOnWorker', () => {
  it('yields exactly the events of the walk on this thread, with a working open() per file', async () => {
    const root = await wideTree();
    const req = walkRequest([root], { exclude: ['skip'] });
    const here: SourceEvent[] = [];
    for await (const ev of runWalk(req)) here.push(ev);
    const there: SourceEvent[] = [];
    for await (const ev of walkOnWorker(req)) there.push(ev);
    expect(here.length).toBeGreaterThan(1800);
    // The target's ancestors (/tmp …) change while other tests run: compare them by path only.
    const depth = root.split('/').filter(Boolean).length;
    const key = (ev: SourceEvent) => (ev.kind === 'entry' && ev.path.length < depth ? ev.path : shape(ev));
    expect(there.map(key)).toEqual(here.map(key));
    const file = there.find(
      (e) => e.kind === 'entry' && e.meta.type === 'file' && e.path.at(-1) === 'f7-\uFF5A\u{1F600}',
    );
    expect(file?.kind).toBe('entry');
    const reader = await (
      file as { open(): Promise<{ read(b: Uint8Array): Promise<number>; close(): Promise<void> }> }
    ).open();
    const buf = new Uint8Array(16);
    const n = await reader.read(buf);
    await reader.close();
    expect(Buffer.from(buf.subarray(0, n)).toString()).toBe('0/7');
  });

  it('starts its thread with the iterator and stops it on return(), read or not', async () => {
    const root = await wideTree();
    const req = walkRequest([root]);
    const before = threads();
    const unread = walkOnWorker(req)[Symbol.asyncIterator]();
    expect(threads()).toBe(before + 1);
    await unread.return?.(undefined);
    expect(threads()).toBe(before);

    const partly = walkOnWorker(req)[Symbol.asyncIterator]();
    for (let i = 0; i < 10; i++) expect((await partly.next()).done).toBe(false);
    await partly.return?.(undefined);
    expect(threads()).toBe(before);
  });
});
