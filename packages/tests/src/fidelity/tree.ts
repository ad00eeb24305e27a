// Seeded random filesystem trees and a recursive tree comparison for the fidelity tests.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { type BigIntStats, createReadStream } from 'node:fs';
import { chmod, lchown, link, lstat, mkdir, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** mulberry32: small, fast, good enough for test data. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const isRoot = process.getuid?.() === 0;

/** Sets atime and mtime to exact nanoseconds (GNU touch), on the link itself for symlinks. */
export async function setTimeNs(path: string, ns: bigint): Promise<void> {
  const sec = ns / 1_000_000_000n;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  await execFileAsync('touch', ['-h', '-d', `@${sec}.${frac}`, '--', path]);
}

export async function mkfifo(path: string, mode = 0o644): Promise<void> {
  await execFileAsync('mkfifo', ['-m', mode.toString(8), '--', path]);
}

export interface GeneratedTree {
  readonly root: string;
  readonly seed: number;
  /** Relative paths of the regular files (every hardlink name). */
  readonly files: string[];
  readonly counts: Record<string, number>;
}

const LONG_NAME = `${'x'.repeat(252)}日`; // 255 bytes in UTF-8

const SPECIAL_NAMES = [
  'é café',
  '日本語のファイル',
  '😀 emoji 🎉',
  'with space',
  ' leading and trailing space ',
  'new\nline',
  'tab\tname',
  '-leading-dash',
  '--double-dash',
  '-',
  'back\\slash',
  'quote"s\'',
  '#hash',
  '*star?',
  '.hidden',
  '..dotdot-prefix',
  LONG_NAME,
];

function textContent(rand: () => number, size: number): Buffer {
  const words = ['backup', 'forge', 'chunk', 'pack', 'index', 'tree', 'snapshot', 'restore', 'ñandú', '東京'];
  const parts: string[] = [];
  let len = 0;
  while (len < size) {
    const w = words[Math.floor(rand() * words.length)]!;
    parts.push(w);
    len += Buffer.byteLength(w) + 1;
  }
  return Buffer.from(parts.join(rand() < 0.1 ? '\n' : ' ')).subarray(0, size);
}

/**
 * Builds a random tree under `root` (which must not exist). Deterministic for a seed, except
 * the random-content files' bytes (drawn from crypto, their sizes come from the seed).
 */
export async function generateTree(root: string, seed: number): Promise<GeneratedTree> {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const files: string[] = [];
  const counts: Record<string, number> = {};
  const bump = (k: string) => {
    counts[k] = (counts[k] ?? 0) + 1;
  };
  const dirs: string[] = ['']; // relative
  const allRel: string[] = []; // everything but the root, in creation order
  const owners = new Map<string, [number, number]>();
  const modes = new Map<string, number>();

  await mkdir(root);
  const abs = (rel: string) => (rel === '' ? root : join(root, rel));
  const addDir = async (rel: string) => {
    await mkdir(abs(rel));
    dirs.push(rel);
    allRel.push(rel);
    bump('dir');
  };
  const addFile = async (rel: string, data: Buffer) => {
    await writeFile(abs(rel), data);
    files.push(rel);
    allRel.push(rel);
    bump('file');
  };
  const randomData = (size: number): Buffer => (rand() < 0.5 ? textContent(rand, size) : randomBytes(size));
  const randomSize = (): number => {
    const r = rand();
    if (r < 0.15) return 0;
    if (r < 0.55) return Math.floor(rand() * 4096);
    if (r < 0.9) return Math.floor(rand() * 512 * 1024);
    return Math.floor(rand() * 3 * 1024 * 1024);
  };

  // Special names: each as a file and (some) as a directory with a file inside.
  await addDir('names');
  for (const name of SPECIAL_NAMES) {
    await addFile(join('names', name), randomData(randomSize()));
  }
  await addDir(join('names', `dir ${LONG_NAME.slice(4)}`));
  await addFile(join('names', `dir ${LONG_NAME.slice(4)}`, '日本'), randomData(100));
  await addDir(join('names', '-dash dir\twith\ttabs'));
  await addFile(join('names', '-dash dir\twith\ttabs', 'new\nline\n'), randomData(10));

  // A path 30 directories deep.
  let deep = 'deep';
  await addDir(deep);
  for (let i = 1; i < 30; i++) {
    deep = join(deep, i % 3 === 0 ? `ü${i}` : `d${i}`);
    await addDir(deep);
  }
  await addFile(join(deep, 'leaf.txt'), Buffer.from(`depth 30, seed ${seed}\n`));

  // Random directories with random files.
  for (let i = 0; i < 8; i++) {
    const parent = pick(dirs.filter((d) => !d.startsWith('deep/')));
    await addDir(join(parent, `r${i}-${pick(['a', 'é', '日', '😀', ' s', '-x'])}`));
  }
  const randomDirs = dirs.filter((d) => !d.startsWith('deep'));
  for (let i = 0; i < 60; i++) {
    await addFile(
      join(pick(randomDirs), `f${i}${pick(['.txt', '.bin', '', ' copy', '.日本'])}`),
      randomData(randomSize()),
    );
  }
  // Big ones: 8 MiB random (several chunks) and 6 MiB compressible text.
  await addFile('big-random.bin', randomBytes(8 * 1024 * 1024));
  await addFile('big-text.txt', textContent(rand, 6 * 1024 * 1024 + 12345));
  await addFile('one-byte', Buffer.from([0]));
  await addFile('zeros-1M', Buffer.alloc(1024 * 1024));

  // Empty files and directories.
  await addFile('empty-file', Buffer.alloc(0));
  await addDir('empty-dir');
  await addDir(join('empty-dir', 'nested-empty'));

  // Symlinks: relative, absolute (inside and outside the tree), dangling, to directories.
  await addDir('links');
  const sym = async (rel: string, target: string) => {
    await symlink(target, abs(rel));
    allRel.push(rel);
    bump('symlink');
  };
  await sym(join('links', 'rel-file'), '../big-text.txt');
  await sym(join('links', 'rel-dir'), '../names');
  await sym(join('links', 'abs-outside'), '/etc/hostname');
  await sym(join('links', 'abs-inside'), join(root, 'one-byte'));
  await sym(join('links', 'dangling'), 'does/not/exist');
  await sym(join('links', 'dangling-abs'), '/nonexistent/nowhere 日本');
  await sym(join('links', 'self-loop'), 'self-loop');
  await sym(join('links', 'odd target'), '  spaces\tand\nnewline ');
  await sym(join('links', '😀'), LONG_NAME);

  // Hardlinks: groups of 2 and 3 names, in the same and in other directories.
  await addDir('hard');
  await addDir(join('hard', 'other'));
  const hardGroups: string[][] = [
    [join('hard', 'h1-a'), join('hard', 'h1-b')],
    [join('hard', 'h2-a'), join('hard', 'other', 'h2-b'), join('names', 'h2-c 日本')],
    [join('hard', 'h3-empty'), join('hard', 'other', 'h3-empty-too')],
  ];
  for (const [gi, group] of hardGroups.entries()) {
    const [first, ...rest] = group;
    await addFile(first!, gi === 2 ? Buffer.alloc(0) : randomData(1000 + Math.floor(rand() * 200_000)));
    for (const r of rest) {
      await link(abs(first!), abs(r));
      files.push(r);
      allRel.push(r);
      bump('hardlink');
    }
  }

  // FIFOs.
  await mkfifo(abs('fifo'), 0o640);
  allRel.push('fifo');
  bump('fifo');
  await mkfifo(abs(join('names', 'fifo 日本')), 0o600);
  allRel.push(join('names', 'fifo 日本'));
  bump('fifo');

  // Modes.
  await addDir('modes');
  const modeFile = async (name: string, mode: number) => {
    const rel = join('modes', name);
    await addFile(rel, randomData(100));
    modes.set(rel, mode);
  };
  await modeFile('m600', 0o600);
  await modeFile('m755', 0o755);
  await modeFile('m4755-setuid', 0o4755);
  await modeFile('m2755-setgid', 0o2755);
  await modeFile('m000', 0o000);
  await modeFile('m444', 0o444);
  await modeFile('m6711', 0o6711);
  await addDir(join('modes', 'sticky-1777'));
  modes.set(join('modes', 'sticky-1777'), 0o1777);
  await addDir(join('modes', 'd500'));
  await addFile(join('modes', 'd500', 'inside'), Buffer.from('read-only dir\n'));
  modes.set(join('modes', 'd500'), 0o500);
  await addDir(join('modes', 'd2770-setgid'));
  modes.set(join('modes', 'd2770-setgid'), 0o2770);
  for (const f of files) {
    if (!modes.has(f) && rand() < 0.3) modes.set(f, pick([0o640, 0o600, 0o755, 0o444, 0o700, 0o664]));
  }

  // Owners other than root (only root can chown).
  if (isRoot) {
    const ids: [number, number][] = [
      [1234, 5678],
      [65534, 65534],
      [1000, 100],
      [0, 5678],
      [4242, 0],
    ];
    for (const rel of allRel) if (rand() < 0.4) owners.set(rel, pick(ids));
    owners.set(join('modes', 'm4755-setuid'), [1234, 5678]);
    owners.set(join('modes', 'm6711'), [1000, 100]);
    owners.set(join('links', 'dangling'), [1234, 5678]);
    owners.set('fifo', [4242, 0]);
    owners.set('names', [1234, 5678]);
  }
  for (const [rel, [uid, gid]] of owners) await lchown(abs(rel), uid, gid);
  // chmod after chown: chown clears setuid/setgid.
  for (const [rel, mode] of modes) await chmod(abs(rel), mode);

  // Times with nanoseconds, deepest first so creating children does not move a parent's mtime.
  const timeFor = (i: number): bigint => {
    const base = BigInt(pick([1_700_000_000, 1_234_567_890, 946_684_800, 2_000_000_000, 86_400]));
    return (base + BigInt(i)) * 1_000_000_000n + BigInt(Math.floor(rand() * 1e9));
  };
  const byDepth = [...allRel].sort((a, b) => b.split('/').length - a.split('/').length);
  const done = new Set<string>();
  let i = 0;
  for (const rel of [...byDepth, '']) {
    if (done.has(rel)) continue;
    done.add(rel);
    await setTimeNs(abs(rel), timeFor(i++));
  }
  return { root, seed, files, counts };
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface NodeInfo {
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ino: bigint;
  readonly nlink: bigint;
  readonly sha256?: string;
  readonly linkTarget?: string;
}

function typeOf(st: BigIntStats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  return 'unknown';
}

/** Every entry under `root` (relative path → info), the root itself as ''. */
export async function scanTree(root: string): Promise<Map<string, NodeInfo>> {
  const out = new Map<string, NodeInfo>();
  const visit = async (rel: string): Promise<void> => {
    const p = rel === '' ? root : join(root, rel);
    const st = await lstat(p, { bigint: true });
    const type = typeOf(st);
    out.set(rel, {
      type,
      mode: Number(st.mode) & 0o7777,
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: st.size,
      mtimeNs: st.mtimeNs,
      ino: st.ino,
      nlink: st.nlink,
      ...(type === 'file' ? { sha256: await sha256File(p) } : {}),
      ...(type === 'symlink' ? { linkTarget: await readlink(p) } : {}),
    });
    if (type === 'dir') {
      for (const name of (await readdir(p)).sort()) await visit(rel === '' ? name : join(rel, name));
    }
  };
  await visit('');
  return out;
}

/**
 * Compares two scanned trees and returns human-readable differences (empty when equal):
 * type, content, size, mode, owner, mtime to the microsecond, symlink targets, hardlink groups.
 */
export function compareTrees(
  src: Map<string, NodeInfo>,
  dst: Map<string, NodeInfo>,
  opts: { owners: boolean; rootMeta: boolean },
): string[] {
  const diffs: string[] = [];
  const show = (p: string) => JSON.stringify(p === '' ? '.' : p);
  for (const p of src.keys()) if (!dst.has(p)) diffs.push(`missing in restore: ${show(p)}`);
  for (const p of dst.keys()) if (!src.has(p)) diffs.push(`extra in restore: ${show(p)}`);
  const srcToDst = new Map<bigint, bigint>();
  const dstToSrc = new Map<bigint, bigint>();
  for (const [p, a] of src) {
    const b = dst.get(p);
    if (!b) continue;
    const d = (what: string, x: unknown, y: unknown) => {
      if (x !== y) diffs.push(`${show(p)}: ${what} ${String(x)} → ${String(y)}`);
    };
    d('type', a.type, b.type);
    if (a.type !== b.type) continue;
    if (p === '' && !opts.rootMeta) continue;
    if (a.type !== 'symlink') d('mode', a.mode.toString(8), b.mode.toString(8));
    if (opts.owners) {
      d('uid', a.uid, b.uid);
      d('gid', a.gid, b.gid);
    }
    d('mtime µs', a.mtimeNs / 1000n, b.mtimeNs / 1000n);
    if (a.type === 'file') {
      d('size', a.size, b.size);
      d('sha256', a.sha256, b.sha256);
      d('nlink', a.nlink, b.nlink);
      const mapped = srcToDst.get(a.ino);
      if (mapped === undefined) {
        const back = dstToSrc.get(b.ino);
        if (back !== undefined && back !== a.ino)
          diffs.push(`${show(p)}: restored as a hardlink of an unrelated file`);
        srcToDst.set(a.ino, b.ino);
        dstToSrc.set(b.ino, a.ino);
      } else if (mapped !== b.ino) {
        diffs.push(`${show(p)}: hardlink group split (restored inode differs from its group)`);
      }
    }
    if (a.type === 'symlink') d('link target', JSON.stringify(a.linkTarget), JSON.stringify(b.linkTarget));
  }
  return diffs;
}
