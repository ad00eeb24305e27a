// Helpers shared by the CLI end-to-end tests (src/cli) and the bad-input tests (src/bad-input).
import { type ChildProcess, spawn } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join, relative } from 'node:path';
import { zstdCompressSync } from 'node:zlib';
import { Repository, type TreeNode, walkSnapshot } from '@backupforge/engine';
import { openBackend } from '@backupforge/storage';
import { expect } from 'vitest';
import {
  cleanEnv,
  FORGE_BIN,
  type ForgeRun,
  forge,
  jsonLines,
  REPO_ROOT,
  runCommand,
} from '../support/cli.ts';

export const PASSWORD = 'correct-horse-battery-staple';
export const PW_ENV: Record<string, string> = { FORGE_PASSWORD: PASSWORD };

/** Runs forge with the test password in the environment (unless `env` overrides it). */
export function forgePw(
  args: string[],
  opts: { env?: Record<string, string>; input?: Buffer | string; cwd?: string; timeoutMs?: number } = {},
): Promise<ForgeRun> {
  return forge(args, { ...opts, env: { ...PW_ENV, ...opts.env } });
}

/** Runs forge and returns stdout as raw bytes (for `dump`). */
export function forgeBytes(
  args: string[],
  env: Record<string, string> = PW_ENV,
): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('FORGE_')) childEnv[k] = v;
  Object.assign(childEnv, env);
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [FORGE_BIN, ...args], {
      env: childEnv,
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', rej);
    child.on('close', (code, signal) =>
      res({
        code: code ?? (signal ? 128 : -1),
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString(),
      }),
    );
  });
}

/** Spawns forge without waiting; the caller reads its streams. */
export function spawnForge(args: string[], env: Record<string, string> = PW_ENV): ChildProcess {
  return spawn(process.execPath, [FORGE_BIN, ...args], {
    env: cleanEnv(env),
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs any command (not forge) and collects its output. */
export const run = runCommand;

/** True when `cmd` is on the PATH. */
export async function haveCommand(cmd: string): Promise<boolean> {
  const r = await run('/bin/sh', ['-c', `command -v ${cmd}`]).catch(() => undefined);
  return r?.code === 0;
}

/** Shell-quotes one word. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(path: string): Promise<string> {
  return sha256(await readFile(path));
}

const STACK_LINE = /^\s+at /;

/** No stack trace anywhere in the output of a command. */
export function expectNoStack(r: { stdout: string | Buffer; stderr: string }): void {
  for (const l of r.stderr.split('\n'))
    expect(l, `stack trace line in stderr:\n${r.stderr}`).not.toMatch(STACK_LINE);
  if (typeof r.stdout === 'string')
    for (const l of r.stdout.split('\n')) expect(l, `stack trace line in stdout`).not.toMatch(STACK_LINE);
}

/**
 * A failed command: exit code `exit`, exactly one `error: ` line on stderr, no stack trace, and
 * (when `code` is given and --json was used) a JSON error line with that code.
 */
export function expectCleanError(
  r: { code: number; stdout: string | Buffer; stderr: string },
  exit: number,
  code?: string,
): string {
  expect(r.code, `exit code; stderr:\n${r.stderr}`).toBe(exit);
  const errLines = r.stderr.split('\n').filter((l) => l.startsWith('error: '));
  expect(errLines, `exactly one error line in stderr:\n${r.stderr}`).toHaveLength(1);
  expectNoStack(r);
  if (code !== undefined) {
    const errs = jsonLines(String(r.stdout)).filter((o) => o.message_type === 'error');
    expect(errs, `one JSON error on stdout:\n${String(r.stdout)}`).toHaveLength(1);
    expect(errs[0]!.code).toBe(code);
  }
  return errLines[0]!;
}

/** Every stdout line is a JSON object. */
export function expectOnlyJson(stdout: string): Record<string, unknown>[] {
  const lines = stdout.split('\n').filter((l) => l !== '');
  for (const l of lines) {
    expect(() => JSON.parse(l), `not JSON: ${l}`).not.toThrow();
    expect(typeof JSON.parse(l)).toBe('object');
  }
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Relative path → sha256 (files) or `<dir>` for every entry below `root` (missing root: empty map). */
export async function dirState(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT' && dir === root) return;
      throw e;
    }
    for (const n of names.sort()) {
      const p = join(dir, n);
      const st = await lstat(p);
      const rel = relative(root, p);
      if (st.isDirectory()) {
        out.set(rel, '<dir>');
        await walk(p);
      } else if (st.isSymbolicLink()) out.set(rel, `-> ${await readlink(p)}`);
      else out.set(rel, await sha256File(p));
    }
  };
  await walk(root);
  return out;
}

/** Same as dirState but as a sorted plain object, for readable diffs in assertions. */
export async function repoSnapshot(root: string): Promise<Record<string, string>> {
  return Object.fromEntries([...(await dirState(root))].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Names of the files directly in `<repo>/<sub>` (e.g. `snapshots`, `locks`). */
export async function listNames(repo: string, sub: string): Promise<string[]> {
  try {
    return (await readdir(join(repo, sub))).filter((n) => !n.startsWith('.tmp-')).sort();
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return [];
    throw e;
  }
}

/** Every data pack of a repository, as absolute paths. */
export async function dataPacks(repo: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await listNames(repo, 'data')) {
    for (const f of await listNames(repo, join('data', d))) out.push(join(repo, 'data', d, f));
  }
  return out.sort();
}

/** Deterministic pseudo-random bytes (for content that must not compress). */
export function pseudoRandom(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(`seed${seed}`).digest();
  for (let off = 0; off < n; off += 32) {
    block = createHash('sha256').update(block).digest();
    block.copy(out, off, 0, Math.min(32, n - off));
  }
  return out;
}

/**
 * A fixture tree with text, empty, binary (NULs, random, long zero runs), multi-chunk and
 * executable/read-only files, a symlink and nested directories, with sub-second mtimes.
 * Returns the relative paths of the regular files.
 */
export async function makeFixture(root: string): Promise<string[]> {
  await mkdir(join(root, 'sub', 'deep'), { recursive: true });
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(join(root, 'empty-dir'), { recursive: true });
  const binary = Buffer.concat([
    Buffer.from([0, 0, 0, 1, 2, 0, 255, 0]),
    randomBytes(100_000),
    Buffer.alloc(200_000),
    randomBytes(50_000),
    Buffer.from([0]),
  ]);
  const files: Record<string, Buffer | string> = {
    'a.txt': 'hello world\n',
    'empty.txt': '',
    'bin/nul.bin': binary,
    'bin/big.bin': pseudoRandom(3 * 1024 * 1024 + 17, 7),
    'sub/notes.md': '# notes\n\nline two\n',
    'sub/deep/x.txt': 'deep file\n'.repeat(1000),
    'run.sh': '#!/bin/sh\necho hi\n',
    'readonly.txt': 'do not touch\n',
    'unicode-名前 ü.txt': 'ünïcödé\n',
  };
  for (const [p, c] of Object.entries(files)) await writeFile(join(root, p), c);
  await chmod(join(root, 'run.sh'), 0o755);
  await chmod(join(root, 'readonly.txt'), 0o400);
  await chmod(join(root, 'sub', 'notes.md'), 0o640);
  await symlink('a.txt', join(root, 'link-to-a'));
  // Sub-second times, set bottom-up so directory mtimes stay as set.
  let t = 1_600_000_000.123456;
  for (const p of Object.keys(files)) {
    t += 1000.000111;
    await utimes(join(root, p), t, t);
  }
  for (const d of ['sub/deep', 'sub', 'bin', 'empty-dir']) {
    t += 1.5;
    await utimes(join(root, d), t, t);
  }
  return Object.keys(files).sort();
}

export interface EntryInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  mtimeUs: bigint;
  size: bigint;
  sha?: string;
  link?: string;
}

/** Type, mode, mtime (µs), size and content hash of every entry below `root`. */
export async function describeTree(
  root: string,
  skip: (rel: string) => boolean = () => false,
): Promise<Map<string, EntryInfo>> {
  const out = new Map<string, EntryInfo>();
  const walk = async (dir: string): Promise<void> => {
    for (const n of (await readdir(dir)).sort()) {
      const p = join(dir, n);
      const rel = relative(root, p);
      if (skip(rel)) continue;
      const st = await lstat(p, { bigint: true });
      const info: EntryInfo = {
        type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
        mode: Number(st.mode & 0o7777n),
        mtimeUs: st.mtimeNs / 1000n,
        size: st.isFile() ? st.size : 0n,
      };
      if (info.type === 'file') info.sha = await sha256File(p);
      if (info.type === 'symlink') {
        info.link = await readlink(p);
        info.mtimeUs = 0n; // symlink times are not compared
      }
      out.set(rel, info);
      if (info.type === 'dir') await walk(p);
    }
  };
  await walk(root);
  return out;
}

/** Opens a repository in-process (for tests that need to know where blobs are). */
export async function openRepo(path: string): Promise<Repository> {
  return Repository.open(await openBackend(path), { password: PASSWORD });
}

export interface BlobPlace {
  file: string;
  blob: string;
  pack: string;
  offset: number;
  length: number;
}

/** For every file of the latest snapshot: where each of its data blobs is stored. */
export async function blobPlaces(
  repoPath: string,
): Promise<{ places: BlobPlace[]; files: Map<string, TreeNode> }> {
  const repo = await openRepo(repoPath);
  try {
    await repo.loadIndex();
    const snaps = await repo.listSnapshots();
    const snap = snaps[snaps.length - 1]!;
    const places: BlobPlace[] = [];
    const files = new Map<string, TreeNode>();
    for await (const { path, node } of walkSnapshot(repo, snap)) {
      if (node.type !== 'file') continue;
      files.set(path, node);
      for (const id of node.content ?? []) {
        const loc = repo.index.lookup(id)!;
        places.push({ file: path, blob: id, pack: loc.packId, offset: loc.offset, length: loc.length });
      }
    }
    return { places, files };
  } finally {
    await repo.close();
  }
}

/**
 * Writes copies of the snapshot `ids[0]` (same content, sealed with new random nonces, so with
 * new ids) until one's id shares its first 4 hex digits with one of `ids`; returns that prefix.
 * The envelope is built here from the format spec (§8: `u8 1 || u8 1 (zstd) || nonce || ct ||
 * tag`, AAD `"bf1:snapshot" || 1 || 1`), so forge reading it back also checks the spec.
 */
export async function makeAmbiguousPrefix(
  repoPath: string,
  ids: string[],
  maxTries = 5_000_000,
): Promise<string> {
  const repo = await openRepo(repoPath);
  try {
    const { id: _id, ...snap } = await repo.loadSnapshot(ids[0]!);
    const body = zstdCompressSync(Buffer.from(JSON.stringify(snap), 'utf8'));
    const aad = Buffer.concat([Buffer.from('bf1:snapshot', 'ascii'), Buffer.from([1, 1])]);
    const prefixes = new Set(ids.map((id) => id.slice(0, 4)));
    for (let i = 0; i < maxTries; i++) {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', repo.keys.encKey, nonce);
      cipher.setAAD(aad);
      const bytes = Buffer.concat([
        Buffer.from([1, 1]),
        nonce,
        cipher.update(body),
        cipher.final(),
        cipher.getAuthTag(),
      ]);
      const name = sha256(bytes);
      if (prefixes.has(name.slice(0, 4)) && !ids.includes(name)) {
        await repo.backend.save({ type: 'snapshot', name }, bytes);
        return name.slice(0, 4);
      }
    }
    throw new Error(`no snapshot id sharing a 4-digit prefix in ${maxTries} tries`);
  } finally {
    await repo.close();
  }
}

export { FORGE_BIN, type ForgeRun, forge, jsonLines };
