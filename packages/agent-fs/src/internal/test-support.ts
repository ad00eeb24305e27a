// Helpers for this package's tests only; not exported from the package.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BackupSource, SourceEntry, SourceEvent, SourceWarning } from '@backupforge/common';
import type { WalkRequest } from './walk-run.ts';

export const execFileAsync = promisify(execFile);

/** A fixture tree: string or bytes = file content, object = directory, `{ symlink }` = link. */
export interface FixtureTree {
  readonly [name: string]: string | Uint8Array | FixtureTree | { readonly symlink: string };
}

const created: string[] = [];

/** A fresh directory under the OS temp dir, removed by {@link removeTempDirs}. */
export async function tempDir(prefix = 'bf-agent-fs-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  for (const dir of created.splice(0)) await rm(dir, { recursive: true, force: true });
}

export async function writeTree(dir: string, tree: FixtureTree): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, value] of Object.entries(tree)) {
    const p = join(dir, name);
    if (typeof value === 'string' || value instanceof Uint8Array) await writeFile(p, value);
    else if ('symlink' in value && typeof value.symlink === 'string') await symlink(value.symlink, p);
    else await writeTree(p, value as FixtureTree);
  }
}

/** `await fixtureDir({ 'a.txt': 'x', sub: { 'b.txt': 'y' } })`: a temp dir holding the tree. */
export async function fixtureDir(tree: FixtureTree): Promise<string> {
  const dir = await tempDir();
  await writeTree(dir, tree);
  return dir;
}

export async function collect(source: BackupSource, signal?: AbortSignal): Promise<SourceEvent[]> {
  const out: SourceEvent[] = [];
  for await (const ev of source.entries(signal)) out.push(ev);
  return out;
}

export function entriesOf(events: readonly SourceEvent[]): SourceEntry[] {
  return events.filter((e): e is SourceEntry => e.kind === 'entry');
}

export function warningsOf(events: readonly SourceEvent[]): SourceWarning[] {
  return events.filter((e): e is SourceWarning => e.kind === 'warning');
}

/** Entry paths relative to `base` (an absolute directory), joined with '/'; others dropped. */
export function relativePaths(events: readonly SourceEvent[], base: string): string[] {
  const prefix = base.split('/').filter((c) => c !== '');
  return entriesOf(events)
    .filter((e) => e.path.length > prefix.length && prefix.every((c, i) => e.path[i] === c))
    .map((e) => e.path.slice(prefix.length).join('/'));
}

export async function readAll(entry: SourceEntry, bufSize = 4096): Promise<Buffer> {
  if (!entry.open) throw new Error(`${entry.path.join('/')} has no content`);
  const reader = await entry.open();
  const parts: Buffer[] = [];
  try {
    for (;;) {
      const buf = new Uint8Array(bufSize);
      const n = await reader.read(buf);
      if (n === 0) break;
      parts.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    await reader.close();
  }
  return Buffer.concat(parts);
}

/** Mounts a tmpfs at `dir`; false when this machine does not allow it (not root, container). */
export async function tryMountTmpfs(dir: string, size: string): Promise<boolean> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try {
    await execFileAsync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
    return true;
  } catch {
    return false;
  }
}

export async function umount(dir: string): Promise<void> {
  await execFileAsync('umount', [dir]);
}

/** A walk of `targets` with no excludes, reading symlink targets (`overrides` change that). */
export function walkRequest(targets: readonly string[], overrides: Partial<WalkRequest> = {}): WalkRequest {
  return {
    targets,
    exclude: [],
    iexclude: [],
    excludeFiles: [],
    tagRules: [],
    oneFileSystem: false,
    readLinks: true,
    ...overrides,
  };
}
