#!/usr/bin/env node
// Deterministic, seedable benchmark corpus generator (issue 4). No downloads, no Python.
//
//   node corpus.mjs tree       DIR [SEED] [--scale X]   ~1.8 GiB, ~40.5k-file source tree in DIR
//   node corpus.mjs mutate     DIR [SEED] [--scale X]   mutate a `tree` corpus in place (~2%)
//   node corpus.mjs vm         DIR [SEED] [--scale X]   DIR/disk.img: a 2 GiB VM-disk-like image
//   node corpus.mjs vm-mutate  DIR [SEED] [--scale X]   mutate DIR/disk.img in place
//
// SCALE (env, or --scale; default 1.0) scales every size and count (SCALE=0.05 for a smoke
// test); use the same SCALE and SEED for a corpus and its mutate / vm-mutate step. SEED
// defaults to 42.
//
// It mirrors /work/shared/bench/make-corpus.sh (the Python generator restic and borg were
// measured with): same MIX and SIZES, not the same bytes. Mapping, category by category:
//
//   tree
//   1. small source-like files: sc(40000) text files, sizes lognormal(mu 8.2, sigma 1.0) capped at
//      256 KiB (median ~3.5 KiB, mean ~6 KiB), under src/pkgNNN/modNN/fileNNNNNN.{ts,js,json,md,
//      py,c,h,txt}; content is 64 random lines from a 60,000-line pool of code/comment/JSON-like
//      lines, then a `// rev <48-bit hex>` line, repeated (compressible, not dedupable).
//   2. medium files: sc(300) files of 64 KiB × 64^U (64 KiB … 4 MiB); even ones text/JSON
//      (data/dN/datasetNNNN.json), odd ones semi-binary (data/dN/assetNNNN.bin: 512-byte runs,
//      50% random, 25% zeros, 25% a 0..255 ramp, ~50% compressible).
//   3. large incompressible binaries: big/db-snapshot.bin 256 MiB, big/media/video1.mp4 192,
//      big/media/archive.tar.xz 128, big/vm/blob.qcow2 64 (each sc(MiB)).
//   4. large compressible logs: logs/app.log 224 MiB, logs/access.log 160, logs/db/slow.log 96;
//      timestamped access/worker/cache/SQL log lines.
//   5. exact duplicates: backup-copy/archive-copy.tar.xz (copy of archive.tar.xz) and sc(200)
//      vendored copies of random small files (vendor/copied/dupNNNN_<name>).
//   6. near-duplicate: big/vm/blob-old.qcow2 = blob.qcow2 with 16 byte flips and a 100-byte insert.
//   7. links/: symlinks to a file, a directory, a relative file path and a dangling one; an empty
//      directory empty-dir/.
//   Every file gets mtime 2024-01-01T00:00:00Z (T0); directories too (the Python one leaves
//   directory mtimes at "now").
//
//   mutate (~2%; files touched get mtime 2024-02-01, T1)
//   - db-snapshot.bin: three 1000-byte inserts at 1/4, 1/2, 3/4 (shifts everything after them);
//   - video1.mp4: 4 MiB (at most a quarter of the file) overwritten in the middle, same size;
//   - blob-old.qcow2: 4 KiB inserted at 10%;
//   - each log: sc(10) MiB of new lines appended;
//   - small files: sc(600) sampled, sc(400) of them edited (40..800 bytes of text inserted in the
//     middle), the rest deleted; sc(400) new small files under src/new/mNN/;
//   - the first up-to-10 odd assets (asset0001, 0003, … 0019): first 64 KiB overwritten;
//   - big/new-upload.bin: new sc(8) MiB random file; a new empty dir empty-dir-2/.
//
//   vm: disk.img of sc(2048) MiB built from 1 MiB extents: 30% zeros (unallocated), 32% random
//   (binaries / compressed data), 25% text, 8% copies of one of the first 256 non-zero extents
//   (duplicate blocks), 5% semi-binary (fs metadata).
//   vm-mutate: sc(480) overwrites of 4 KiB × 1..32 at 4 KiB-aligned offsets (half random, half
//   text), one sc(16) MiB extent-aligned region newly filled with random data, and three small
//   inserts (512 B × 1..8) at random offsets (stream-like shifts).
//
// Randomness: sfc32 (a small, fast, well-tested 32-bit PRNG), seeded through splitmix32 from a
// label such as "42/tree"; floats take 53 bits from two draws; normal variates are Box–Muller;
// random bytes are the sfc32 stream itself, written little-endian. Same (mode, SEED, SCALE) ⇒
// same bytes, names and mtimes, on any Node; `tree` then `mutate` always gives the same tree.
import {
  closeSync,
  copyFileSync,
  existsSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const MiB = 1 << 20;
const T0 = 1704067200; // 2024-01-01T00:00:00Z: mtime of generated files
const T1 = 1706745600; // 2024-02-01T00:00:00Z: mtime of mutated / added files

// ---------------------------------------------------------------- PRNG
function splitmix32(a) {
  return () => {
    a = (a + 0x9e3779b9) | 0;
    let t = a ^ (a >>> 16);
    t = Math.imul(t, 0x21f0aaad);
    t ^= t >>> 15;
    t = Math.imul(t, 0x735a2d97);
    return (t ^ (t >>> 15)) >>> 0;
  };
}

function hashLabel(label) {
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class Rng {
  constructor(label) {
    const sm = splitmix32(hashLabel(String(label)));
    this.a = sm();
    this.b = sm();
    this.c = sm();
    this.d = sm();
    for (let i = 0; i < 16; i++) this.u32();
  }
  /** sfc32: one 32-bit unsigned integer. */
  u32() {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
  /** Uniform float in [0, 1) with 53 random bits. */
  random() {
    return ((this.u32() >>> 5) * 67108864 + (this.u32() >>> 6)) / 9007199254740992;
  }
  /** Integer in [0, n). */
  below(n) {
    return Math.floor(this.random() * n);
  }
  /** Integer in [a, b], both included (like Python's randint). */
  int(a, b) {
    return a + this.below(b - a + 1);
  }
  choice(arr) {
    return arr[this.below(arr.length)];
  }
  gauss() {
    let u = 0;
    while (u === 0) u = this.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.random());
  }
  lognorm(mu, sigma) {
    return Math.exp(mu + sigma * this.gauss());
  }
  /** Fills `buf` with random bytes (the sfc32 stream, little-endian words). */
  fill(buf) {
    const words = buf.length >>> 2;
    const aligned = buf.byteOffset % 4 === 0;
    if (aligned && words > 0) {
      const u = new Uint32Array(buf.buffer, buf.byteOffset, words);
      let { a, b, c, d } = this;
      for (let i = 0; i < words; i++) {
        const t = (((a + b) | 0) + d) | 0;
        d = (d + 1) | 0;
        a = b ^ (b >>> 9);
        b = (b + (b << 3)) | 0;
        c = (c << 21) | (c >>> 11);
        c = (c + t) | 0;
        u[i] = t;
      }
      Object.assign(this, { a, b, c, d });
    } else {
      for (let i = 0; i < words; i++) buf.writeUInt32LE(this.u32(), i * 4);
    }
    for (let i = words * 4; i < buf.length; i++) buf[i] = this.u32() & 0xff;
    return buf;
  }
  bytes(n) {
    return this.fill(Buffer.allocUnsafe(n));
  }
  /** k distinct integers from [0, n) (partial Fisher–Yates), like random.sample(range(n), k). */
  sample(n, k) {
    const a = Array.from({ length: n }, (_, i) => i);
    k = Math.min(k, n);
    for (let i = 0; i < k; i++) {
      const j = i + this.below(n - i);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a.slice(0, k);
  }
}

// ---------------------------------------------------------------- content
const SYL =
  'ba co de fi go hu ja ke li mo nu pa qui ro su ta ve wi xo ya zu st tr ch sh er an in on ex'.split(' ');
const KW = (
  'const let function return if else for while import export class new this await async type ' +
  'interface null undefined true false throw try catch switch case break default static public'
).split(' ');

function wordList(rng) {
  const ws = new Set();
  while (ws.size < 3000) {
    const n = rng.int(2, 4);
    let w = '';
    for (let i = 0; i < n; i++) w += rng.choice(SYL);
    ws.add(w);
  }
  return [...ws].sort();
}

/** 60,000 code-, comment- and JSON-like lines (each as a Buffer ending in '\n'). */
export function linePool(rng, n = 60000) {
  const ws = wordList(rng);
  const w = () => rng.choice(ws);
  const pool = [];
  for (let i = 0; i < n; i++) {
    const ind = '  '.repeat(rng.int(0, 4));
    const k = rng.random();
    let s;
    if (k < 0.45) {
      const args = Array.from({ length: rng.int(0, 3) }, w).join(', ');
      s = `${rng.choice(KW)} ${w()}${rng.choice(['', 'Id', 'List', 'Map'])} = ${w()}.${w()}(${args});`;
    } else if (k < 0.65) {
      s = `// ${Array.from({ length: rng.int(3, 12) }, w).join(' ')}`;
    } else if (k < 0.8) {
      s = `${rng.choice(KW)} (${w()} ${rng.choice(['<', '>', '===', '!=='])} ${rng.int(0, 4096)}) {`;
    } else if (k < 0.9) {
      s = '}';
    } else {
      s = `"${w()}": "${Array.from({ length: rng.int(1, 6) }, w).join(' ')}",`;
    }
    pool.push(Buffer.from(`${ind}${s}\n`));
  }
  return pool;
}

/** `n` bytes of text: groups of 64 pool lines, each group followed by a `// rev <hex>` line. */
export function textBlob(rng, pool, n) {
  const out = Buffer.allocUnsafe(n);
  let pos = 0;
  while (pos < n) {
    for (let i = 0; i < 64 && pos < n; i++) pos += rng.choice(pool).copy(out, pos);
    if (pos >= n) break;
    const rev = (rng.u32() * 65536 + (rng.u32() & 0xffff)).toString(16).padStart(12, '0');
    pos += out.write(`// rev ${rev}\n`, pos, 'latin1');
  }
  return out;
}

const RAMP = Buffer.from(Array.from({ length: 512 }, (_, i) => i & 0xff));
/** ~50% compressible: 512-byte runs, 50% random, 25% zeros, 25% a 0..255 ramp. */
export function semiBinary(rng, n) {
  const units = Math.ceil(n / 512);
  const out = Buffer.alloc(units * 512);
  for (let u = 0; u < units; u++) {
    const r = rng.random();
    const part = out.subarray(u * 512, u * 512 + 512);
    if (r < 0.5) rng.fill(part);
    else if (r >= 0.75) RAMP.copy(part);
  }
  return out.subarray(0, n);
}

const LOGMSG = [
  (a, b) => `GET /api/v1/items/${a} 200 ${b}ms`,
  (a, b) => `POST /api/v1/upload 201 ${a}ms size=${b}`,
  (a, b) => `worker-${a} job ${b} finished ok`,
  (a, b) => `cache miss key=user:${a} ttl=${b}`,
  (a, b) => `WARN slow query took ${a}ms rows=${b}`,
  (a, b) => `ERROR upstream timeout after ${a}ms retry=${b}`,
  (a, b) => `INFO snapshot ${a} committed ${b} blobs`,
  (a, b) => `DEBUG gc pass ${a} freed ${b} bytes`,
];
/** About `n` bytes of log lines starting at time `t` (ms); returns [Buffer, t]. */
function logLines(rng, t, n) {
  const out = [];
  let size = 0;
  while (size < n) {
    t += rng.int(0, 900);
    const msg = rng.choice(LOGMSG)(rng.int(1, 99999), rng.int(1, 5000));
    const host = String(rng.int(1, 8)).padStart(2, '0');
    const l = `${new Date(t).toISOString()} host${host} svc[${rng.int(1000, 1100)}]: ${msg}\n`;
    out.push(l);
    size += l.length;
  }
  return [Buffer.from(out.join(''), 'latin1'), t];
}

// ---------------------------------------------------------------- file helpers
const made = new Set();
function mkdirp(d) {
  if (made.has(d)) return;
  mkdirSync(d, { recursive: true });
  made.add(d);
}

function put(path, data, mtime = T0) {
  mkdirp(dirname(path));
  writeFileSync(path, data);
  utimesSync(path, mtime, mtime);
}

/** Writes `n` random bytes to `path` in 4 MiB pieces. */
function writeRandomFile(rng, path, n, mtime = T0) {
  mkdirp(dirname(path));
  const fd = openSync(path, 'w');
  const buf = Buffer.allocUnsafe(4 * MiB);
  try {
    while (n > 0) {
      const k = Math.min(n, buf.length);
      writeSync(fd, rng.fill(buf.subarray(0, k)));
      n -= k;
    }
  } finally {
    closeSync(fd);
  }
  utimesSync(path, mtime, mtime);
}

/** Inserts data at offsets (of the original file), streaming through a temporary file. */
function insertAt(path, edits, mtime = T1) {
  const sorted = [...edits].sort((x, y) => x[0] - y[0]);
  const tmp = `${path}.tmp-insert`;
  const src = openSync(path, 'r');
  const dst = openSync(tmp, 'w');
  const buf = Buffer.allocUnsafe(8 * MiB);
  let pos = 0;
  const copyUntil = (end) => {
    while (pos < end) {
      const n = readSync(src, buf, 0, Math.min(buf.length, end - pos), pos);
      if (n === 0) break;
      writeSync(dst, buf.subarray(0, n));
      pos += n;
    }
  };
  try {
    for (const [off, data] of sorted) {
      copyUntil(off);
      writeSync(dst, data);
    }
    copyUntil(Number.POSITIVE_INFINITY);
  } finally {
    closeSync(src);
    closeSync(dst);
  }
  renameSync(tmp, path);
  utimesSync(path, mtime, mtime);
}

function overwriteAt(path, off, data, mtime = T1) {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, off);
  } finally {
    closeSync(fd);
  }
  if (mtime !== null) utimesSync(path, mtime, mtime);
}

/** Sets every directory's mtime under `root` (and root's) to `mtime`, deepest first. */
function fixDirMtimes(root, mtime) {
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    utimesSync(d, mtime, mtime);
  };
  walk(root);
}

// ---------------------------------------------------------------- layout
export function layout(scale) {
  const sc = (n) => Math.max(1, Math.floor(n * scale));
  return {
    sc,
    nSmall: sc(40000),
    nMed: sc(300),
    bigBin: [
      ['big/db-snapshot.bin', 256],
      ['big/media/video1.mp4', 192],
      ['big/media/archive.tar.xz', 128],
      ['big/vm/blob.qcow2', 64],
    ],
    logs: [
      ['logs/app.log', 224],
      ['logs/access.log', 160],
      ['logs/db/slow.log', 96],
    ],
  };
}

const EXTS = ['.ts', '.js', '.json', '.md', '.py', '.c', '.h', '.txt'];
function smallName(root, i) {
  const pkg = `pkg${String(Math.floor(i / 400)).padStart(3, '0')}`;
  const mod = `mod${String(Math.floor(i / 40) % 10).padStart(2, '0')}`;
  return join(root, 'src', pkg, mod, `file${String(i).padStart(6, '0')}${EXTS[i % EXTS.length]}`);
}

const log = (msg) => process.stderr.write(`[corpus] ${msg}\n`);
const mib = (n) => (n / MiB).toFixed(1);

// ---------------------------------------------------------------- modes
export function genTree(root, seed = 42, scale = 1) {
  const L = layout(scale);
  const rng = new Rng(`${seed}/tree`);
  const pool = linePool(new Rng(`${seed}/pool`));
  const t = Date.now();
  mkdirp(root);
  // 1) small source-like files
  let total = 0;
  for (let i = 0; i < L.nSmall; i++) {
    const n = Math.min(Math.floor(rng.lognorm(8.2, 1.0)), 256 * 1024);
    put(smallName(root, i), textBlob(rng, pool, n));
    total += n;
  }
  log(`small: ${L.nSmall} files ${mib(total)} MiB (${(Date.now() - t) / 1000}s)`);
  // 2) medium files, 64 KiB .. 4 MiB, half text/JSON, half semi-binary
  total = 0;
  for (let i = 0; i < L.nMed; i++) {
    const n = Math.floor(64 * 1024 * 64 ** rng.random());
    if (i % 2 === 0)
      put(
        join(root, 'data', `d${i % 7}`, `dataset${String(i).padStart(4, '0')}.json`),
        textBlob(rng, pool, n),
      );
    else put(join(root, 'data', `d${i % 7}`, `asset${String(i).padStart(4, '0')}.bin`), semiBinary(rng, n));
    total += n;
  }
  log(`medium: ${L.nMed} files ${mib(total)} MiB`);
  // 3) large incompressible binaries
  for (const [name, m] of L.bigBin) writeRandomFile(rng, join(root, name), L.sc(m) * MiB);
  // 4) large compressible logs
  let tms = T0 * 1000;
  for (const [name, m] of L.logs) {
    const p = join(root, name);
    mkdirp(dirname(p));
    const fd = openSync(p, 'w');
    let left = L.sc(m) * MiB;
    while (left > 0) {
      let d;
      [d, tms] = logLines(rng, tms, Math.min(left, 8 * MiB));
      d = d.subarray(0, left);
      writeSync(fd, d);
      left -= d.length;
    }
    closeSync(fd);
    utimesSync(p, T0, T0);
  }
  log(`big + logs done (${(Date.now() - t) / 1000}s)`);
  // 5) exact duplicates: one big binary copied, sc(200) small files vendored
  const copy = join(root, 'backup-copy', 'archive-copy.tar.xz');
  mkdirp(dirname(copy));
  copyFileSync(join(root, L.bigBin[2][0]), copy);
  utimesSync(copy, T0, T0);
  for (let j = 0; j < L.sc(200); j++) {
    const i = rng.below(L.nSmall);
    const name = `dup${String(j).padStart(4, '0')}_${basename(smallName(root, i))}`;
    put(join(root, 'vendor', 'copied', name), readFileSync(smallName(root, i)));
  }
  // 6) near-duplicate: the 64 MiB blob with 16 byte flips and one 100-byte insert
  const b = readFileSync(join(root, L.bigBin[3][0]));
  for (let i = 0; i < 16; i++) b[rng.below(b.length)] ^= 0xff;
  const k = rng.below(b.length);
  put(
    join(root, 'big', 'vm', 'blob-old.qcow2'),
    Buffer.concat([b.subarray(0, k), rng.bytes(100), b.subarray(k)]),
  );
  // 7) symlinks (file, dir, relative, dangling) and an empty dir
  mkdirp(join(root, 'empty-dir'));
  const links = [
    ['links/app.log', '../logs/app.log'],
    ['links/src-pkg000', '../src/pkg000'],
    ['links/readme', `../${relative(root, smallName(root, 3))}`],
    ['links/dangling', '../does/not/exist'],
  ];
  for (const [lp, target] of links) {
    const p = join(root, lp);
    mkdirp(dirname(p));
    if (!lexists(p)) symlinkSync(target, p);
    lutimesSync(p, T0, T0);
  }
  fixDirMtimes(root, T0);
  log(`tree done in ${(Date.now() - t) / 1000}s`);
}

function lexists(p) {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

export function genMutate(root, seed = 42, scale = 1) {
  const L = layout(scale);
  const rng = new Rng(`${seed}/mutate`);
  const pool = linePool(new Rng(`${seed}/pool`));
  let changed = 0;
  // big1: three 1000-byte inserts (shift everything after them)
  let p = join(root, L.bigBin[0][0]);
  let n = statSync(p).size;
  insertAt(p, [
    [Math.floor(n / 4), rng.bytes(1000)],
    [Math.floor(n / 2), rng.bytes(1000)],
    [Math.floor((3 * n) / 4), rng.bytes(1000)],
  ]);
  changed += 3000;
  // big2: overwrite 4 MiB in the middle (same size)
  p = join(root, L.bigBin[1][0]);
  n = statSync(p).size;
  const k = Math.min(4 * MiB, Math.floor(n / 4));
  overwriteAt(p, Math.floor(n / 2), rng.bytes(k));
  changed += k;
  // near-dup blob: insert 4 KiB at 10%
  p = join(root, 'big', 'vm', 'blob-old.qcow2');
  n = statSync(p).size;
  insertAt(p, [[Math.floor(n / 10), rng.bytes(4096)]]);
  changed += 4096;
  // logs: append sc(10) MiB each
  let tms = T1 * 1000;
  for (const [name] of L.logs) {
    p = join(root, name);
    let d;
    [d, tms] = logLines(rng, tms, L.sc(10) * MiB);
    const fd = openSync(p, 'a');
    writeSync(fd, d);
    closeSync(fd);
    utimesSync(p, T1, T1);
    changed += d.length;
  }
  // small files: edit sc(400) (insert text in the middle), delete the other sampled ones, add sc(400)
  const idx = rng.sample(L.nSmall, L.sc(600));
  const edit = idx.slice(0, L.sc(400));
  const dele = idx.slice(L.sc(400));
  for (const i of edit) {
    p = smallName(root, i);
    if (!existsSync(p)) continue;
    const b = readFileSync(p);
    const m = Math.floor(b.length / 2);
    const ins = textBlob(rng, pool, rng.int(40, 800));
    put(p, Buffer.concat([b.subarray(0, m), ins, b.subarray(m)]), T1);
    changed += ins.length;
  }
  for (const i of dele) rmSync(smallName(root, i), { force: true });
  for (let j = 0; j < L.sc(400); j++) {
    const n2 = Math.min(Math.floor(rng.lognorm(8.2, 1.0)), 256 * 1024);
    const name = `added${String(j).padStart(5, '0')}.ts`;
    put(
      join(root, 'src', 'new', `m${String(Math.floor(j / 100)).padStart(2, '0')}`, name),
      textBlob(rng, pool, n2),
      T1,
    );
    changed += n2;
  }
  // medium: overwrite the first 64 KiB of up to 10 assets
  for (let i = 1; i < Math.min(L.nMed, 20); i += 2) {
    p = join(root, 'data', `d${i % 7}`, `asset${String(i).padStart(4, '0')}.bin`);
    overwriteAt(p, 0, rng.bytes(64 * 1024));
    changed += 64 * 1024;
  }
  // one new incompressible file, one new empty dir
  writeRandomFile(rng, join(root, 'big', 'new-upload.bin'), L.sc(8) * MiB, T1);
  changed += L.sc(8) * MiB;
  mkdirp(join(root, 'empty-dir-2'));
  fixDirMtimes(root, T1);
  log(`mutate: ~${mib(changed)} MiB new/changed content`);
  return changed;
}

const VM_EXTENT = MiB;
export function genVm(root, seed = 42, scale = 1) {
  const L = layout(scale);
  const rng = new Rng(`${seed}/vm`);
  const pool = linePool(new Rng(`${seed}/pool`));
  const size = L.sc(2048) * MiB;
  const p = join(root, 'disk.img');
  mkdirp(root);
  const written = [];
  const fd = openSync(p, 'w');
  const zeros = Buffer.alloc(VM_EXTENT);
  try {
    for (let e = 0; e < size / VM_EXTENT; e++) {
      const r = rng.random();
      let d;
      if (r < 0.3)
        d = zeros; // unallocated
      else if (r < 0.62)
        d = rng.bytes(VM_EXTENT); // binaries / compressed data
      else if (r < 0.87)
        d = textBlob(rng, pool, VM_EXTENT); // text, config, logs
      else if (r < 0.95 && written.length > 0)
        d = written[rng.below(written.length)]; // duplicate blocks
      else d = semiBinary(rng, VM_EXTENT); // fs metadata-ish
      if (r >= 0.3 && written.length < 256) written.push(d);
      writeSync(fd, d);
    }
  } finally {
    closeSync(fd);
  }
  utimesSync(p, T0, T0);
  log(`vm: ${p} ${mib(size)} MiB`);
}

export function genVmMutate(root, seed = 42, scale = 1) {
  const L = layout(scale);
  const rng = new Rng(`${seed}/vm-mutate`);
  const pool = linePool(new Rng(`${seed}/pool`));
  const p = join(root, 'disk.img');
  const n = statSync(p).size;
  let changed = 0;
  // ~1.5%: 4 KiB-aligned clusters of block overwrites (guest fs writes)
  for (let i = 0; i < L.sc(480); i++) {
    const off = rng.below(Math.floor(n / 4096)) * 4096;
    const k = 4096 * rng.int(1, 32);
    const data = rng.random() < 0.5 ? rng.bytes(k) : textBlob(rng, pool, k);
    overwriteAt(p, off, data.subarray(0, Math.max(0, Math.min(k, n - off))), null);
    changed += k;
  }
  // a 16 MiB region newly filled (new files written into free space)
  const off = rng.below(Math.max(1, Math.floor(n / VM_EXTENT) - 16)) * VM_EXTENT;
  const region = rng.bytes(Math.min(L.sc(16) * MiB, n - off));
  overwriteAt(p, off, region, null);
  changed += region.length;
  // stream-like shifts (tar/vzdump-style archives): 3 small inserts
  const ins = [];
  for (let i = 0; i < 3; i++) {
    const at = rng.below(n);
    ins.push([at, rng.bytes(512 * rng.int(1, 8))]);
  }
  insertAt(p, ins);
  log(`vm-mutate: ~${mib(changed)} MiB overwritten + 3 inserts`);
  return changed;
}

export const MODES = { tree: genTree, mutate: genMutate, vm: genVm, 'vm-mutate': genVmMutate };

// ---------------------------------------------------------------- CLI
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  let scale = Number(process.env.SCALE ?? '1');
  const pos = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--scale') scale = Number(args[++i]);
    else if (args[i].startsWith('--scale=')) scale = Number(args[i].slice(8));
    else pos.push(args[i]);
  }
  const [mode, dir, seedArg] = pos;
  if (!MODES[mode] || !dir || !(scale > 0)) {
    process.stderr.write('usage: corpus.mjs tree|mutate|vm|vm-mutate DIR [SEED] [--scale X]  (env SCALE)\n');
    process.exit(2);
  }
  MODES[mode](dir, Number(seedArg ?? 42), scale);
}
