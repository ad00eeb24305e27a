// Shared helpers of the crash-safety tests (reliability scenarios 1–4, 8): seeded randomness,
// source trees with known content, running the built `forge` with its exit signal, fast
// repositories and restore comparison.
import { spawn } from 'node:child_process';
import { createCipheriv, createHash, randomInt } from 'node:crypto';
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createFsRestoreTarget } from '@backupforge/agent-fs';
import { findSnapshot, Repository, restore } from '@backupforge/engine';
import { openBackend } from '@backupforge/storage';
import { expect } from 'vitest';
import { PASSWORD, PW_ENV } from '../cli/helpers.ts';
import { cleanEnv, FORGE_BIN, jsonLines, REPO_ROOT } from '../support/cli.ts';

export { PASSWORD, PW_ENV };

/** The cheapest Argon2id parameters the format accepts (tests only). */
export const FAST_KDF = { memoryKiB: 8192, iterations: 1, parallelism: 1 } as const;

// ---------------------------------------------------------------------------------------------
// Seeds and randomness

/**
 * The seed of a test file: FORGE_CRASH_SEED when set (to replay a failure), else a fresh one.
 * Printed so every run can be replayed.
 */
export function testSeed(name: string): number {
  const env = process.env.FORGE_CRASH_SEED;
  const seed = env ? Number(env) >>> 0 : randomInt(1, 2 ** 31);
  console.log(`[${name}] seed ${seed} (replay with FORGE_CRASH_SEED=${seed})`);
  return seed;
}

/** An env-var count with a default (e.g. FORGE_CRASH_ITERATIONS=500 for the nightly run). */
export function envCount(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

/** Small deterministic PRNG (mulberry32). */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }
  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('pick from an empty list');
    return xs[this.int(0, xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** `n` incompressible bytes (AES-256-CTR keystream keyed by the next PRNG values). */
  bytes(n: number): Buffer {
    const key = Buffer.alloc(32);
    for (let i = 0; i < 32; i += 4) key.writeUInt32LE(this.int(0, 2 ** 32), i);
    const iv = Buffer.alloc(16);
    iv.writeUInt32LE(this.int(0, 2 ** 32), 0);
    return createCipheriv('aes-256-ctr', key, iv).update(Buffer.alloc(n));
  }
  /** `n` compressible text bytes. */
  text(n: number): Buffer {
    const words = ['forge', 'backup', 'pack', 'index', 'snapshot', 'tree', 'blob', 'lock', '\n'];
    const parts: string[] = [];
    let len = 0;
    while (len < n) {
      const w = `${this.pick(words)} `;
      parts.push(w);
      len += w.length;
    }
    return Buffer.from(parts.join('')).subarray(0, n);
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

// ---------------------------------------------------------------------------------------------
// Source trees with a known manifest (relative path → SHA-256)

export type Manifest = Map<string, string>;

/** A source directory whose content the test always knows. */
export class SourceTree {
  readonly root: string;
  readonly manifest: Manifest = new Map();
  readonly #rng: Rng;

  constructor(root: string, rng: Rng) {
    this.root = root;
    this.#rng = rng;
  }

  async write(rel: string, data: Buffer): Promise<void> {
    const abs = join(this.root, rel);
    await mkdir(join(abs, '..'), { recursive: true });
    await writeFile(abs, data);
    this.manifest.set(rel, sha256(data));
  }

  async remove(rel: string): Promise<void> {
    await rm(join(this.root, rel), { force: true });
    this.manifest.delete(rel);
  }

  /** `small` files of 0–`smallMax` bytes in a few directories and `big` random files of `bigSize`. */
  async generate(opts: { small: number; smallMax: number; big: number; bigSize: number }): Promise<void> {
    const r = this.#rng;
    for (let i = 0; i < opts.small; i++) {
      const dir = `d${i % 7}/${i % 3 === 0 ? 'deep/' : ''}`;
      const n = r.int(0, opts.smallMax);
      await this.write(`${dir}f${i}.${i % 2 ? 'txt' : 'bin'}`, i % 2 ? r.text(n) : r.bytes(n));
    }
    for (let i = 0; i < opts.big; i++) await this.write(`big/b${i}.dat`, r.bytes(opts.bigSize));
  }

  /** A few random changes: rewrites, partial overwrites of big files, a new file, a deletion. */
  async mutate(
    opts: { changes: number; bigRegion?: number; replaceBig?: number } = { changes: 3 },
  ): Promise<string[]> {
    const r = this.#rng;
    const done: string[] = [];
    const files = [...this.manifest.keys()].sort();
    const bigs = files.filter((f) => f.startsWith('big/'));
    for (let i = bigs.length - 1; i > 0; i--) {
      const j = r.int(0, i + 1);
      [bigs[i], bigs[j]] = [bigs[j]!, bigs[i]!];
    }
    for (const f of bigs.slice(0, opts.replaceBig ?? 0)) {
      const size = (await readFile(join(this.root, f))).length;
      await this.write(f, r.bytes(size));
      done.push(`${f} (new content)`);
    }
    for (let i = 0; i < opts.changes; i++) {
      const f = r.pick(files);
      if (f.startsWith('big/') && opts.bigRegion) {
        const old = await readFile(join(this.root, f));
        const off = r.int(0, Math.max(1, old.length - opts.bigRegion));
        r.bytes(Math.min(opts.bigRegion, old.length)).copy(old, off);
        await this.write(f, old);
      } else if (!f.startsWith('big/')) {
        await this.write(f, r.bytes(r.int(0, 20_000)));
      }
      done.push(f);
    }
    const added = `new/n${r.int(0, 1e9)}.bin`;
    await this.write(added, r.bytes(r.int(1, 50_000)));
    done.push(added);
    if (r.chance(0.5)) {
      const victim = r.pick(files.filter((x) => !x.startsWith('big/')));
      await this.remove(victim);
      done.push(`-${victim}`);
    }
    return done;
  }
}

/** Relative path → SHA-256 of every regular file below `root` (recursive). */
export async function manifestOf(root: string): Promise<Manifest> {
  const out: Manifest = new Map();
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT' && rel === '') return;
      throw e;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(join(dir, e.name), r);
      else if (e.isFile()) out.set(r, sha256(await readFile(join(dir, e.name))));
      else out.set(r, `<${e.isSymbolicLink() ? 'symlink' : 'other'}>`);
    }
  };
  await walk(root, '');
  return out;
}

export function sorted(m: Manifest): Record<string, string> {
  return Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : 1)));
}

// ---------------------------------------------------------------------------------------------
// Running forge

export interface ForgeResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the built forge with the test password (FORGE_* of the caller's shell dropped) and reports its exit signal. */
export function forgeRun(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<ForgeResult> {
  const t0 = Date.now();
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [FORGE_BIN, ...args], {
      env: cleanEnv({ ...PW_ENV, ...env }),
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', rej);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      res({
        code,
        signal,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        ms: Date.now() - t0,
      });
    });
  });
}

export interface CheckSummary {
  ok: boolean;
  errors: number;
  snapshots: number;
  packs: number;
  indexFiles: number;
  unreferencedPacks: number;
  packsRead: number;
  blobsRead: number;
}

export interface CheckRun {
  run: ForgeResult;
  summary: CheckSummary | undefined;
  /** Errors and warnings (`message_type: warning` with a `kind`). */
  problems: { severity: string; kind: string; code: string; object: string; message: string }[];
  notes: { kind: string; object: string }[];
}

/** `forge check [--read-data] --json`, parsed. */
export async function forgeCheck(repo: string, readData = false, env: Record<string, string> = {}) {
  const run = await forgeRun(['check', '-r', repo, '--json', ...(readData ? ['--read-data'] : [])], env);
  const lines = jsonLines(run.stdout);
  const out: CheckRun = {
    run,
    summary: lines.find((l) => l.message_type === 'summary') as CheckSummary | undefined,
    problems: lines.filter((l) => l.message_type === 'warning' && 'kind' in l) as CheckRun['problems'],
    notes: lines.filter((l) => l.message_type === 'finding') as CheckRun['notes'],
  };
  return out;
}

/** Asserts a clean check: exit 0, ok, 0 errors, no warnings; returns the summary. */
export async function expectCleanCheck(repo: string, what: string, readData = false): Promise<CheckSummary> {
  const c = await forgeCheck(repo, readData);
  const ctx = `${what}: check${readData ? ' --read-data' : ''}\nstdout:\n${c.run.stdout.slice(0, 4000)}\nstderr:\n${c.run.stderr.slice(0, 4000)}`;
  expect(c.run.code, ctx).toBe(0);
  expect(c.summary?.ok, ctx).toBe(true);
  expect(c.summary?.errors, ctx).toBe(0);
  expect(c.problems, ctx).toEqual([]);
  // Notes only: packs left by interrupted runs, and blobs stored twice (a re-run stored them again).
  for (const n of c.notes) expect(['pack-unreferenced', 'blob-duplicate'], ctx).toContain(n.kind);
  expect(c.notes.filter((n) => n.kind === 'pack-unreferenced').length, ctx).toBe(
    c.summary!.unreferencedPacks,
  );
  return c.summary!;
}

/** Restores `<snapshot>:<srcPath>` with the CLI into a fresh `target` and returns its manifest. */
export async function cliRestore(
  repo: string,
  snapshot: string,
  srcPath: string,
  target: string,
): Promise<{ run: ForgeResult; manifest: Manifest }> {
  await rm(target, { recursive: true, force: true });
  const run = await forgeRun(['restore', '-r', repo, `${snapshot}:${srcPath}`, '--target', target, '--json']);
  const manifest = await manifestOf(target);
  await rm(target, { recursive: true, force: true });
  return { run, manifest };
}

/** Restores with the CLI and asserts success and byte-identity with `expected`. */
export async function expectCliRestore(
  repo: string,
  snapshot: string,
  srcPath: string,
  target: string,
  expected: Manifest,
  what: string,
): Promise<void> {
  const { run, manifest } = await cliRestore(repo, snapshot, srcPath, target);
  expect(run.code, `${what}: restore ${snapshot.slice(0, 8)}\n${run.stderr}`).toBe(0);
  expect(sorted(manifest), `${what}: restore ${snapshot.slice(0, 8)} is byte-identical`).toEqual(
    sorted(expected),
  );
}

// ---------------------------------------------------------------------------------------------
// Repositories in-process

/** Creates a repository with the cheapest KDF, so every later `forge` run spends ~no time in Argon2id. */
export async function initFastRepo(
  path: string,
  opts: { packSize?: number; chunker?: { min: number; avg: number; max: number } } = {},
): Promise<void> {
  const repo = await Repository.init(await openBackend(path), {
    password: PASSWORD,
    kdf: FAST_KDF,
    ...(opts.packSize ? { packSize: opts.packSize } : {}),
    ...(opts.chunker ? { chunker: opts.chunker } : {}),
  });
  await repo.close();
}

export async function openFsRepo(path: string): Promise<Repository> {
  return Repository.open(await openBackend(path), { password: PASSWORD });
}

/** Restores `snapshot:srcPath` in-process into `target` and returns the manifest (target removed after). */
export async function libRestore(
  repo: Repository,
  snapshot: string,
  srcPath: string,
  target: string,
): Promise<{ errors: number; manifest: Manifest }> {
  await rm(target, { recursive: true, force: true });
  const snap = await findSnapshot(repo, snapshot);
  const r = await restore(repo, snap, createFsRestoreTarget({ root: target }), { subpath: srcPath });
  const manifest = await manifestOf(target);
  await rm(target, { recursive: true, force: true });
  return { errors: r.errors.length, manifest };
}

/** Names of objects in `<repo>/<sub>` (temporary files excluded); `data` is walked one level down. */
export async function objectNames(repo: string, sub: 'snapshots' | 'index' | 'keys' | 'locks' | 'data') {
  const list = async (d: string) => {
    try {
      return (await readdir(d)).filter((n) => !n.startsWith('.tmp-')).sort();
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return [];
      throw e;
    }
  };
  if (sub !== 'data') return list(join(repo, sub));
  const out: string[] = [];
  for (const d of await list(join(repo, 'data'))) out.push(...(await list(join(repo, 'data', d))));
  return out.sort();
}

export function packPath(repo: string, id: string): string {
  return join(repo, 'data', id.slice(0, 2), id);
}

export async function copyRepo(from: string, to: string): Promise<void> {
  await rm(to, { recursive: true, force: true });
  await cp(from, to, { recursive: true });
}

/** Sleeps `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
