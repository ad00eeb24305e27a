#!/usr/bin/env node
// `pnpm bench` (issue 4): forge side by side with restic and borg on the same corpus.
//
//   npm run bench -- [--scale 1] [--seed 42] [--work /tmp/forge-bench] [--out bench-results]
//                    [--tools forge,restic,borg] [--skip-vm] [--skip-copy] [--keep] [--profile]
//                    [--remote [--remote-scale 0.05]]   (+ forge over S3 and SFTP: remote.mjs)
//
// (`node scripts/run.mjs bench …` builds, then runs this file with the project's Node 24.)
//
// What it does, in one run, on FRESH repositories, interleaved per phase (phase 1 for forge,
// restic and borg, then phase 2 …), with the page cache dropped before every measured command
// (`sync; echo 3 > /proc/sys/vm/drop_caches`, when allowed; the output says whether it was):
//   1 backup1   first backup of the corpus tree (corpus.mjs tree)
//   2 backup2   unchanged re-backup
//   3 backup3   backup after `corpus.mjs mutate` (~2% changed)
//   4 restore   full restore of the latest snapshot into an empty dir, then every file, symlink
//               and directory compared with the source (type, size, sha256, link target)
//   5 check     full data read: forge check --read-data / restic check --read-data /
//               borg check --verify-data
//   + copy      the latest snapshot copied into a new repository made with the source's
//               chunker parameters (forge init --copy-chunker-params-from / restic init
//               --copy-chunker-params; forge copy / restic copy); borg 1.2 has no copy. Not an
//               issue-4 phase: reported, but left out of the peak-RSS target.
//   6 vm1       first backup of a 2 GiB VM-disk-like image (corpus.mjs vm), own fresh repos
//   7 vm2       backup after `corpus.mjs vm-mutate`; the repository growth is the "added bytes"
// Every measured command runs under `/usr/bin/time -v` (wall, user+sys CPU, max RSS); the
// repository size (`du -sb`) is recorded after every backup. Tool settings: forge defaults
// (zstd, encryption, FORGE_PASSWORD); restic `--compression auto`; borg `init -e repokey`,
// `create -C zstd,3`. restic, borgbackup and GNU time are installed with apt-get when missing.
// --profile also runs one extra, unmeasured forge first backup under `node --cpu-prof` (main
// thread and worker threads) and summarises the top self-time functions.
//
// Results (JSON + Markdown) go to --out (default <repo>/bench-results/, git-ignored). Corpora,
// repositories and restores live under --work (default /tmp/forge-bench) and are deleted at the
// end unless --keep.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { genMutate, genTree, genVm, genVmMutate } from './corpus.mjs';
import { profileForgeBackup, profileMarkdown } from './cpu-profile.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../../..');
const FORGE = join(ROOT, 'apps', 'forge', 'dist', 'main.js');
const NODE = process.execPath;
const TIME = '/usr/bin/time';
const MB = 1e6;
const MiB = 1024 * 1024;
const PASSWORD = 'bench-correct-horse-battery-staple';
const ALL_TOOLS = ['forge', 'restic', 'borg'];

// ---------------------------------------------------------------- options
function parseArgs(argv) {
  const o = {
    scale: 1,
    seed: 42,
    work: '/tmp/forge-bench',
    out: join(ROOT, 'bench-results'),
    tools: ALL_TOOLS,
    skipVm: false,
    skipCopy: false,
    keep: false,
    profile: false,
    remote: false,
    remoteScale: 0.05,
  };
  for (let i = 0; i < argv.length; i++) {
    const [a, inline] = argv[i].includes('=') ? argv[i].split(/=(.*)/s) : [argv[i], undefined];
    const val = () => inline ?? argv[++i];
    if (a === '--scale') o.scale = Number(val());
    else if (a === '--seed') o.seed = Number(val());
    else if (a === '--work') o.work = resolve(val());
    else if (a === '--out') o.out = resolve(val());
    else if (a === '--tools')
      o.tools = val()
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    else if (a === '--skip-vm') o.skipVm = true;
    else if (a === '--skip-copy') o.skipCopy = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--profile') o.profile = true;
    else if (a === '--remote') o.remote = true;
    else if (a === '--remote-scale') o.remoteScale = Number(val());
    else if (a === '--help' || a === '-h') {
      console.log(
        'usage: run.mjs [--scale 1] [--seed 42] [--work DIR] [--out DIR] [--tools forge,restic,borg] [--skip-vm] [--skip-copy] [--keep] [--profile] [--remote [--remote-scale 0.05]]',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!(o.scale > 0)) throw new Error('--scale must be a positive number');
  if (!Number.isInteger(o.seed)) throw new Error('--seed must be an integer');
  for (const t of o.tools) if (!ALL_TOOLS.includes(t)) throw new Error(`unknown tool ${t}`);
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const log = (msg) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------- system helpers
function sh(cmd, args, o = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * MiB, ...o });
  return {
    status: r.status ?? (r.error ? 127 : 128),
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    error: r.error,
  };
}

function which(cmd) {
  const r = sh('sh', ['-c', `command -v ${cmd}`]);
  return r.status === 0 ? r.stdout.trim() : null;
}

let aptUpdated = false;
function aptInstall(pkgs) {
  log(`installing ${pkgs.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let r = sh('apt-get', ['install', '-y', ...pkgs], { env });
  if (r.status !== 0 && !aptUpdated) {
    sh('apt-get', ['update'], { env });
    aptUpdated = true;
    r = sh('apt-get', ['install', '-y', ...pkgs], { env });
  }
  if (r.status !== 0) throw new Error(`apt-get install ${pkgs.join(' ')} failed:\n${r.stderr.slice(-2000)}`);
}

function ensureTools() {
  const need = [];
  if (!existsSync(TIME)) need.push('time');
  if (opts.tools.includes('restic') && !which('restic')) need.push('restic');
  if (opts.tools.includes('borg') && !which('borg')) need.push('borgbackup');
  if (need.length) aptInstall(need);
}

function dropCaches() {
  sh('sync', []);
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/** Busy CPU seconds of the whole machine so far (all cores), from /proc/stat. */
function machineBusySeconds() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = f;
    return (user + nice + system + irq + softirq + (steal || 0)) / 100;
  } catch {
    return Number.NaN;
  }
}

function dirBytes(p) {
  const r = sh('du', ['-sb', p]);
  return r.status === 0 ? Number(r.stdout.split(/\s/)[0]) : Number.NaN;
}

/** Sum of regular file sizes under `root` (lstat; symlinks not followed) and the file count. */
function treeStats(root) {
  let bytes = 0;
  let files = 0;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        bytes += statSync(p).size;
        files++;
      }
    }
  };
  walk(root);
  return { bytes, files };
}

function sha256File(p) {
  const h = createHash('sha256');
  const fd = openSync(p, 'r');
  const buf = Buffer.allocUnsafe(4 * MiB);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** relPath → { type, size, sha, target, mode, mtime } for everything under root. */
function manifest(root) {
  const m = new Map();
  const walk = (d, rel) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      const meta = { mode: st.mode & 0o7777, mtime: Math.floor(st.mtimeMs / 1000) };
      if (st.isDirectory()) {
        m.set(r, { type: 'dir', ...meta });
        walk(p, r);
      } else if (st.isSymbolicLink()) m.set(r, { type: 'symlink', target: readlinkSync(p), ...meta });
      else if (st.isFile()) m.set(r, { type: 'file', size: st.size, sha: sha256File(p), ...meta });
      else m.set(r, { type: 'other', ...meta });
    }
  };
  walk(root, '');
  return m;
}

/** Compares a restored tree against the source manifest. */
function verifyRestore(srcManifest, restoredRoot) {
  const got = manifest(restoredRoot);
  const content = [];
  const meta = [];
  for (const [rel, want] of srcManifest) {
    const have = got.get(rel);
    if (!have) {
      content.push(`missing ${rel}`);
      continue;
    }
    if (have.type !== want.type) content.push(`type ${rel}: ${have.type} != ${want.type}`);
    else if (want.type === 'file' && (have.size !== want.size || have.sha !== want.sha))
      content.push(
        `content ${rel}: ${have.size} bytes sha ${have.sha.slice(0, 12)} != ${want.size} bytes sha ${want.sha.slice(0, 12)}`,
      );
    else if (want.type === 'symlink' && have.target !== want.target)
      content.push(`symlink ${rel}: -> ${have.target} != -> ${want.target}`);
    if (have.type === want.type) {
      if (have.mode !== want.mode)
        meta.push(`mode ${rel}: ${have.mode.toString(8)} != ${want.mode.toString(8)}`);
      if (have.mtime !== want.mtime) meta.push(`mtime ${rel}: ${have.mtime} != ${want.mtime}`);
    }
  }
  for (const rel of got.keys()) if (!srcManifest.has(rel)) content.push(`extra ${rel}`);
  const files = [...srcManifest.values()].filter((e) => e.type === 'file').length;
  return {
    ok: content.length === 0,
    entries: srcManifest.size,
    files,
    contentProblems: content.length,
    metadataDifferences: meta.length,
    firstContentProblems: content.slice(0, 20),
    firstMetadataDifferences: meta.slice(0, 10),
  };
}

/** Where a tool put the restored source dir inside `target`. */
function restoredRoot(target, src) {
  for (const c of [join(target, src), join(target, basename(src)), target]) {
    if (existsSync(join(c, 'src')) && existsSync(join(c, 'logs'))) return c;
  }
  return join(target, src);
}

function parseTime(text) {
  const get = (re) => {
    const m = re.exec(text);
    return m ? m[1] : undefined;
  };
  const wall = get(/Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/);
  let seconds = Number.NaN;
  if (wall) seconds = wall.split(':').reduce((acc, x) => acc * 60 + Number(x), 0);
  const user = Number(get(/User time \(seconds\): ([\d.]+)/));
  const sys = Number(get(/System time \(seconds\): ([\d.]+)/));
  const rssKb = Number(get(/Maximum resident set size \(kbytes\): (\d+)/));
  const exit = Number(get(/Exit status: (\d+)/) ?? Number.NaN);
  return { seconds, user, sys, cpu: user + sys, rssMiB: rssKb / 1024, exit };
}

// ---------------------------------------------------------------- tools
const W = opts.work;
const dirs = {
  corpus: join(W, 'corpus'),
  tree: join(W, 'corpus', 'tree'),
  vm: join(W, 'corpus', 'vm'),
  repos: join(W, 'repos'),
  restore: join(W, 'restore'),
  logs: join(W, 'logs'),
  home: join(W, 'home'),
};

const toolEnv = {
  ...process.env,
  HOME: dirs.home, // keeps borg's and restic's caches/config inside the work dir
  XDG_CACHE_HOME: join(dirs.home, '.cache'),
  XDG_CONFIG_HOME: join(dirs.home, '.config'),
  FORGE_PASSWORD: PASSWORD,
  RESTIC_PASSWORD: PASSWORD,
  // the copy phase's source repository has the same password
  FORGE_FROM_PASSWORD_COMMAND: `echo ${PASSWORD}`,
  RESTIC_FROM_PASSWORD: PASSWORD,
  BORG_PASSPHRASE: PASSWORD,
  BORG_BASE_DIR: dirs.home,
  BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  BORG_DISPLAY_PASSPHRASE: 'no',
  RESTIC_PROGRESS_FPS: '0.016',
};
delete toolEnv.FORGE_REPOSITORY;
delete toolEnv.RESTIC_REPOSITORY;
delete toolEnv.BORG_REPO;

const archiveCounter = new Map();
const TOOLS = {
  forge: {
    version: () => sh(NODE, [FORGE, '--version'], { env: toolEnv }).stdout.trim(),
    init: (repo) => [NODE, FORGE, '-r', repo, 'init'],
    backup: (repo, src) => [NODE, FORGE, '-r', repo, 'backup', src],
    restore: (repo, target) => [NODE, FORGE, '-r', repo, 'restore', 'latest', '--target', target],
    check: (repo) => [NODE, FORGE, '-r', repo, 'check', '--read-data'],
    copyInit: (dst, src) => [NODE, FORGE, '-r', dst, 'init', '--copy-chunker-params-from', src],
    copy: (dst, src) => [NODE, FORGE, '-r', dst, 'copy', 'latest', '--from-repo', src],
  },
  restic: {
    version: () => sh('restic', ['version'], { env: toolEnv }).stdout.trim(),
    init: (repo) => ['restic', '-r', repo, 'init'],
    backup: (repo, src) => ['restic', '-r', repo, 'backup', '--compression', 'auto', src],
    restore: (repo, target) => ['restic', '-r', repo, 'restore', 'latest', '--target', target],
    check: (repo) => ['restic', '-r', repo, 'check', '--read-data'],
    copyInit: (dst, src) => ['restic', '-r', dst, 'init', '--from-repo', src, '--copy-chunker-params'],
    copy: (dst, src) => ['restic', '-r', dst, 'copy', 'latest', '--from-repo', src],
  },
  borg: {
    version: () => sh('borg', ['--version'], { env: toolEnv }).stdout.trim(),
    init: (repo) => ['borg', 'init', '-e', 'repokey', repo],
    backup: (repo, src) => {
      const n = (archiveCounter.get(repo) ?? 0) + 1;
      archiveCounter.set(repo, n);
      return ['borg', 'create', '-C', 'zstd,3', `${repo}::bench-${n}`, src];
    },
    // borg extract writes into the current directory (run with cwd = target)
    restore: (repo) => ['borg', 'extract', `${repo}::bench-${archiveCounter.get(repo)}`],
    check: (repo) => ['borg', 'check', '--verify-data', repo],
  },
};

const results = {
  startedAt: new Date().toISOString(),
  command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
  options: { ...opts },
  machine: {},
  versions: {},
  cacheDrop: { attempted: 0, succeeded: 0 },
  corpus: {},
  steps: [],
  restoreVerification: {},
  vmAdded: {},
  failures: [],
  profile: null,
};

let stepNo = 0;
/** Runs one command under /usr/bin/time -v; returns the parsed step (also pushed to results). */
function measure(tool, phase, argv, { cwd, bytes, measured = true } = {}) {
  stepNo++;
  const tag = `${String(stepNo).padStart(2, '0')}-${phase}-${tool}`;
  const outFile = join(dirs.logs, `${tag}.out`);
  const errFile = join(dirs.logs, `${tag}.err`);
  const timeFile = join(dirs.logs, `${tag}.time`);
  let dropped = false;
  if (measured) {
    results.cacheDrop.attempted++;
    dropped = dropCaches();
    if (dropped) results.cacheDrop.succeeded++;
  }
  const load1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  const busy0 = machineBusySeconds();
  const outFd = openSync(outFile, 'w');
  const errFd = openSync(errFile, 'w');
  const r = spawnSync(TIME, ['-v', '-o', timeFile, ...argv], {
    cwd: cwd ?? W,
    env: toolEnv,
    stdio: ['ignore', outFd, errFd],
  });
  closeSync(outFd);
  closeSync(errFd);
  const busy1 = machineBusySeconds();
  const t = existsSync(timeFile) ? parseTime(readFileSync(timeFile, 'utf8')) : {};
  const exit = r.status ?? 128;
  const step = {
    tool,
    phase,
    command: argv.map((a) => (a === NODE ? 'node' : a)).join(' '),
    exit,
    seconds: t.seconds,
    cpuSeconds: t.cpu,
    userSeconds: t.user,
    sysSeconds: t.sys,
    peakRssMiB: t.rssMiB,
    bytes,
    MBps: bytes && t.seconds > 0 ? bytes / MB / t.seconds : undefined,
    cacheDropped: dropped,
    loadavg1Before: load1,
    // CPU seconds the rest of the machine used meanwhile (busy time of all cores minus ours)
    otherCpuSeconds: Number.isFinite(busy1 - busy0) ? Math.max(0, busy1 - busy0 - (t.cpu ?? 0)) : undefined,
  };
  if (exit !== 0) {
    const err = readFileSync(errFile, 'utf8').trim().split('\n').slice(-8).join('\n');
    step.error = err;
    results.failures.push({ tool, phase, exit, stderr: err });
    log(`  !! ${tool} ${phase} exited ${exit}: ${err.split('\n').slice(-1)[0]}`);
  }
  if (measured) results.steps.push(step);
  log(
    `  ${tool.padEnd(6)} ${phase.padEnd(8)} ${fmt(step.seconds, 2)} s` +
      (step.MBps ? `, ${fmt(step.MBps, 1)} MB/s` : '') +
      `, CPU ${fmt(step.cpuSeconds, 1)} s, RSS ${fmt(step.peakRssMiB, 0)} MiB, other CPU ${fmt(step.otherCpuSeconds, 1)} s`,
  );
  return step;
}

function fmt(x, d) {
  return x === undefined || x === null || Number.isNaN(x) ? '–' : Number(x).toFixed(d);
}

// ---------------------------------------------------------------- machine info
function machineInfo() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model;
  const kernel = sh('uname', ['-r']).stdout.trim();
  let fs = '';
  const df = sh('df', ['-T', '-h', dirname(W)]);
  if (df.status === 0) fs = df.stdout.trim().split('\n').slice(-1)[0].split(/\s+/).slice(0, 3).join(' ');
  return {
    cpuModel: model,
    cores: cpus().length,
    ramGiB: +(totalmem() / 1024 ** 3).toFixed(1),
    kernel,
    workFilesystem: fs,
    loadavgAtStart: readFileSync('/proc/loadavg', 'utf8').trim(),
  };
}

// ---------------------------------------------------------------- the run
function phaseBackup(phase, repoOf, src, bytes) {
  log(`phase ${phase} (${(bytes / MB).toFixed(1)} MB)`);
  for (const tool of opts.tools) {
    const repo = repoOf(tool);
    const step = measure(tool, phase, TOOLS[tool].backup(repo, src), { bytes });
    step.repoBytes = dirBytes(repo);
  }
}

/** The latest snapshot copied into a fresh repository with the source's chunker parameters. */
function phaseCopy(repoOf, bytes) {
  const tools = opts.tools.filter((t) => TOOLS[t].copy);
  if (tools.length === 0) return;
  log(`phase copy (${(bytes / MB).toFixed(1)} MB snapshot)`);
  for (const tool of tools) {
    const dst = join(dirs.repos, `${tool}-copy`);
    rmSync(dst, { recursive: true, force: true });
    const s = measure(tool, 'init-copy', TOOLS[tool].copyInit(dst, repoOf(tool)), { measured: false });
    if (s.exit !== 0) throw new Error(`${tool} init for copy failed: ${s.error}`);
  }
  for (const tool of tools) {
    const dst = join(dirs.repos, `${tool}-copy`);
    const step = measure(tool, 'copy', TOOLS[tool].copy(dst, repoOf(tool)), { bytes });
    step.repoBytes = dirBytes(dst);
  }
  for (const tool of tools) rmSync(join(dirs.repos, `${tool}-copy`), { recursive: true, force: true });
}

function initRepos(suffix) {
  for (const tool of opts.tools) {
    const repo = join(dirs.repos, `${tool}-${suffix}`);
    rmSync(repo, { recursive: true, force: true });
    const s = measure(tool, `init-${suffix}`, TOOLS[tool].init(repo), { measured: false });
    if (s.exit !== 0) throw new Error(`${tool} init failed: ${s.error}`);
  }
  return (tool) => join(dirs.repos, `${tool}-${suffix}`);
}

async function main() {
  if (!existsSync(FORGE)) throw new Error(`${FORGE} is missing: build first (node scripts/run.mjs build)`);
  ensureTools();
  rmSync(W, { recursive: true, force: true });
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  results.machine = machineInfo();
  results.versions = { node: process.version };
  for (const tool of opts.tools) results.versions[tool] = TOOLS[tool].version();
  results.versions.gnuTime =
    sh(TIME, ['--version']).stdout.trim().split('\n')[0] ||
    sh(TIME, ['--version']).stderr.trim().split('\n')[0];
  log(`versions: ${JSON.stringify(results.versions)}`);
  log(`machine: ${JSON.stringify(results.machine)}`);

  // corpus
  let t = Date.now();
  genTree(dirs.tree, opts.seed, opts.scale);
  const before = treeStats(dirs.tree);
  results.corpus.tree = { ...before, generateSeconds: (Date.now() - t) / 1000 };
  log(
    `corpus: ${before.files} files, ${(before.bytes / MB).toFixed(1)} MB in ${results.corpus.tree.generateSeconds} s`,
  );

  const repoOf = initRepos('tree');
  phaseBackup('backup1', repoOf, dirs.tree, before.bytes);

  if (opts.profile && opts.tools.includes('forge')) profileForge();

  phaseBackup('backup2', repoOf, dirs.tree, before.bytes);

  t = Date.now();
  const changed = genMutate(dirs.tree, opts.seed, opts.scale);
  const after = treeStats(dirs.tree);
  results.corpus.mutated = { ...after, changedBytes: changed, generateSeconds: (Date.now() - t) / 1000 };
  phaseBackup('backup3', repoOf, dirs.tree, after.bytes);

  log('phase restore');
  const srcManifest = manifest(dirs.tree);
  // Every tool restores under the same conditions: the targets are deleted after the phase, not
  // between tools. (On ext4 without a journal, creating files right after tens of thousands were
  // deleted costs far more: the inode allocator skips inodes deleted in the last minutes, which
  // slowed whichever tool restored after the previous one's target was removed.)
  for (const tool of opts.tools) rmSync(join(dirs.restore, tool), { recursive: true, force: true });
  for (const tool of opts.tools) {
    const target = join(dirs.restore, tool);
    mkdirSync(target, { recursive: true });
    const argv = TOOLS[tool].restore(repoOf(tool), target);
    measure(tool, 'restore', argv, { bytes: after.bytes, cwd: target });
    const v = verifyRestore(srcManifest, restoredRoot(target, dirs.tree));
    results.restoreVerification[tool] = v;
    log(
      `  ${tool} restore verification: ${v.ok ? 'byte-identical' : `${v.contentProblems} PROBLEMS`} (${v.files} files, ${v.entries} entries; ${v.metadataDifferences} metadata differences)`,
    );
    for (const p of v.firstContentProblems.slice(0, 5)) log(`     ${p}`);
  }
  if (!opts.keep)
    for (const tool of opts.tools) rmSync(join(dirs.restore, tool), { recursive: true, force: true });

  log('phase check');
  for (const tool of opts.tools) measure(tool, 'check', TOOLS[tool].check(repoOf(tool)));

  if (!opts.skipCopy) phaseCopy(repoOf, after.bytes);

  if (!opts.skipVm) {
    t = Date.now();
    genVm(dirs.vm, opts.seed, opts.scale);
    const img = join(dirs.vm, 'disk.img');
    const vmBytes = statSync(img).size;
    results.corpus.vm = { bytes: vmBytes, generateSeconds: (Date.now() - t) / 1000 };
    const vmRepo = initRepos('vm');
    phaseBackup('vm1', vmRepo, dirs.vm, vmBytes);
    const changedVm = genVmMutate(dirs.vm, opts.seed, opts.scale);
    const vmBytes2 = statSync(img).size;
    results.corpus.vmMutated = { bytes: vmBytes2, changedBytes: changedVm };
    phaseBackup('vm2', vmRepo, dirs.vm, vmBytes2);
    for (const tool of opts.tools) {
      const s1 = results.steps.find((s) => s.tool === tool && s.phase === 'vm1');
      const s2 = results.steps.find((s) => s.tool === tool && s.phase === 'vm2');
      results.vmAdded[tool] = s2.repoBytes - s1.repoBytes;
    }
  }
  results.finishedAt = new Date().toISOString();
  results.machine.loadavgAtEnd = readFileSync('/proc/loadavg', 'utf8').trim();
}

// ---------------------------------------------------------------- profiling
function profileForge() {
  log('profiling an extra forge first backup (node --cpu-prof; not part of the table)');
  const p = profileForgeBackup({ src: dirs.tree, work: join(W, 'profile'), env: toolEnv, node: NODE });
  results.profile = p;
  log(`  profile: ${p.seconds.toFixed(2)} s, exit ${p.exit}, ${p.threads.length} thread profiles`);
}

// ---------------------------------------------------------------- report
const PHASES = ['backup1', 'backup2', 'backup3', 'restore', 'check', 'copy', 'vm1', 'vm2'];
const PHASE_NAMES = {
  backup1: '1 first backup',
  backup2: '2 unchanged re-backup',
  backup3: '3 backup after mutate',
  restore: '4 full restore',
  check: '5 check, full data read',
  copy: 'copy latest snapshot (extra)',
  vm1: 'VM first backup',
  vm2: 'VM backup after mutate',
};

const step = (tool, phase) => results.steps.find((s) => s.tool === tool && s.phase === phase);

function ratio(a, b) {
  return a > 0 && b > 0 && Number.isFinite(a / b) ? a / b : undefined;
}

function evaluateTargets() {
  const out = [];
  if (!opts.tools.includes('forge') || !opts.tools.includes('restic')) return out;
  const speed = (phase) => {
    const f = step('forge', phase);
    const r = step('restic', phase);
    if (!f || !r || f.exit !== 0 || r.exit !== 0) return undefined;
    return ratio(r.seconds, f.seconds); // same bytes: restic seconds / forge seconds = throughput ratio
  };
  const atLeast = (name, value, need, unit = '×') => {
    const met = value !== undefined && value >= need;
    out.push({
      target: name,
      required: `≥ ${need}${unit} restic`,
      measured: value === undefined ? 'n/a' : `${value.toFixed(3)}${unit}`,
      met,
      shortBy:
        !met && value !== undefined
          ? `${(need - value).toFixed(3)}${unit} short (${((100 * (need - value)) / need).toFixed(1)}% below the target)`
          : undefined,
    });
  };
  atLeast('first backup throughput', speed('backup1'), 1.5);
  atLeast('restore throughput', speed('restore'), 1.5);
  atLeast('unchanged re-backup throughput', speed('backup2'), 1.2);
  atLeast('backup after mutation throughput', speed('backup3'), 1.2);
  // peak RSS: the highest max RSS of any measured command of the issue's phases (not copy)
  const peak = (tool) =>
    Math.max(...results.steps.filter((s) => s.tool === tool && s.phase !== 'copy').map((s) => s.peakRssMiB));
  const fr = peak('forge');
  const rr = peak('restic');
  out.push({
    target: 'peak RSS (max over all phases)',
    required: `≤ restic's (${rr.toFixed(1)} MiB)`,
    measured: `${fr.toFixed(1)} MiB (${(fr / rr).toFixed(3)}×)`,
    met: fr <= rr,
    shortBy:
      fr <= rr
        ? undefined
        : `${(fr - rr).toFixed(1)} MiB over (${((100 * (fr - rr)) / rr).toFixed(1)}% above restic)`,
  });
  const fs = step('forge', 'backup3')?.repoBytes;
  const rs = step('restic', 'backup3')?.repoBytes;
  if (fs && rs) {
    const lim = rs * 1.02;
    out.push({
      target: 'repository size after the 3 backups',
      required: `≤ restic's + 2% (${(lim / MB).toFixed(2)} MB)`,
      measured: `${(fs / MB).toFixed(2)} MB (${(fs / rs).toFixed(4)}× restic)`,
      met: fs <= lim,
      shortBy:
        fs <= lim
          ? undefined
          : `${((fs - lim) / MB).toFixed(2)} MB over the limit (${((100 * (fs - rs)) / rs).toFixed(2)}% above restic, allowed 2%)`,
    });
  }
  if (!opts.skipVm) {
    atLeast('VM first backup throughput', speed('vm1'), 1.5);
    const fa = results.vmAdded.forge;
    const ra = results.vmAdded.restic;
    if (fa !== undefined && ra !== undefined) {
      const lim = ra * 1.2;
      out.push({
        target: 'VM mutated backup: bytes added',
        required: `≤ 1.2× restic's (${(lim / MB).toFixed(2)} MB)`,
        measured: `${(fa / MB).toFixed(2)} MB (${(fa / ra).toFixed(3)}× restic's ${(ra / MB).toFixed(2)} MB)`,
        met: fa <= lim,
        shortBy:
          fa <= lim
            ? undefined
            : `${((fa - lim) / MB).toFixed(2)} MB over the limit (${(fa / ra).toFixed(3)}× instead of ≤ 1.2×)`,
      });
    }
  }
  const bad = Object.entries(results.restoreVerification).filter(([, v]) => !v.ok);
  const forgeFailed = results.failures.filter((f) => f.tool === 'forge');
  out.push({
    target: 'forge correctness (every command exits 0, restore byte-identical)',
    required: 'yes',
    measured:
      forgeFailed.length === 0 && !bad.some(([t]) => t === 'forge')
        ? 'yes'
        : `${forgeFailed.length} failed commands; restore ${results.restoreVerification.forge?.ok ? 'ok' : 'NOT identical'}`,
    met: forgeFailed.length === 0 && results.restoreVerification.forge?.ok !== false,
  });
  return out;
}

function markdown() {
  const L = [];
  const v = results.versions;
  const m = results.machine;
  L.push(`### Run of ${results.startedAt.slice(0, 10)} (scale ${opts.scale}, seed ${opts.seed})`);
  L.push('');
  L.push(`Command: \`${results.command}\``);
  L.push('');
  L.push(
    `Versions: forge ${v.forge ?? '–'}, ${v.restic ?? 'restic –'}, ${v.borg ?? 'borg –'}, Node ${v.node}. ` +
      `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.ramGiB} GiB RAM, kernel ${m.kernel}, work dir on ${m.workFilesystem}.`,
  );
  L.push('');
  const c = results.corpus;
  if (c.tree)
    L.push(
      `Corpus: tree ${c.tree.files} files, ${(c.tree.bytes / MB).toFixed(1)} MB; after mutate ${c.mutated?.files} files, ` +
        `${(c.mutated?.bytes / MB).toFixed(1)} MB (~${(c.mutated?.changedBytes / MB).toFixed(1)} MB new or changed)` +
        (c.vm
          ? `; VM image ${(c.vm.bytes / MB).toFixed(1)} MB` +
            (c.vmMutated
              ? `, vm-mutate ~${(c.vmMutated.changedBytes / MB).toFixed(1)} MB overwritten + 3 inserts.`
              : ' (the run stopped before vm-mutate).')
          : '.'),
    );
  L.push('');
  const cd = results.cacheDrop;
  L.push(
    `Page cache dropped before every measured command: ${cd.succeeded === cd.attempted ? 'yes' : cd.succeeded === 0 ? 'NO (not permitted; warm-cache numbers)' : `only ${cd.succeeded} of ${cd.attempted} times`}. ` +
      `Load average at start: ${m.loadavgAtStart}; at end: ${m.loadavgAtEnd ?? '–'}.`,
  );
  L.push('');
  L.push(
    'MB = 10^6 bytes. MB/s = source bytes / wall seconds. "other CPU" = CPU seconds the rest of the machine used during the command (0 on an idle machine).',
  );
  L.push('');
  L.push('| phase | tool | seconds | MB/s | CPU s | peak RSS MiB | repo MB | other CPU s | exit |');
  L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const ph of PHASES) {
    for (const tool of opts.tools) {
      const s = step(tool, ph);
      if (!s) continue;
      L.push(
        `| ${PHASE_NAMES[ph]} | ${tool} | ${fmt(s.seconds, 2)} | ${s.MBps ? fmt(s.MBps, 1) : ''} | ${fmt(s.cpuSeconds, 2)} | ${fmt(s.peakRssMiB, 1)} | ${s.repoBytes !== undefined ? fmt(s.repoBytes / MB, 2) : ''} | ${fmt(s.otherCpuSeconds, 1)} | ${s.exit} |`,
      );
    }
  }
  L.push('');
  const peers = opts.tools.filter((t) => t !== 'forge');
  if (opts.tools.includes('forge') && peers.length) {
    L.push(
      'Ratios forge/peer: speed = throughput ratio (peer seconds / forge seconds; > 1 means forge is faster); RSS and repo: forge / peer (< 1 means forge uses less).',
    );
    L.push('');
    const head = ['phase'];
    for (const p of peers) head.push(`speed vs ${p}`);
    for (const p of peers) head.push(`RSS vs ${p}`);
    for (const p of peers) head.push(`repo vs ${p}`);
    L.push(`| ${head.join(' | ')} |`);
    L.push(
      `|---|${head
        .slice(1)
        .map(() => '---:')
        .join('|')}|`,
    );
    for (const ph of PHASES) {
      const f = step('forge', ph);
      if (!f) continue;
      const row = [PHASE_NAMES[ph]];
      for (const p of peers) row.push(fmt(ratio(step(p, ph)?.seconds, f.seconds), 3));
      for (const p of peers) row.push(fmt(ratio(f.peakRssMiB, step(p, ph)?.peakRssMiB), 3));
      for (const p of peers)
        row.push(f.repoBytes !== undefined ? fmt(ratio(f.repoBytes, step(p, ph)?.repoBytes), 4) : '');
      L.push(`| ${row.join(' | ')} |`);
    }
    L.push('');
  }
  if (Object.keys(results.vmAdded).length) {
    L.push('VM image, bytes the second backup added to the repository (repository size delta):');
    L.push('');
    L.push(`| tool | added MB | vs restic |`);
    L.push('|---|---:|---:|');
    for (const tool of opts.tools)
      L.push(
        `| ${tool} | ${fmt(results.vmAdded[tool] / MB, 2)} | ${fmt(ratio(results.vmAdded[tool], results.vmAdded.restic), 3)} |`,
      );
    L.push('');
  }
  L.push(
    'Restore verification (type, size, sha256 and symlink target of every entry; metadata = mode and mtime):',
  );
  L.push('');
  L.push('| tool | result | entries | content problems | metadata differences |');
  L.push('|---|---|---:|---:|---:|');
  for (const [tool, r] of Object.entries(results.restoreVerification))
    L.push(
      `| ${tool} | ${r.ok ? 'byte-identical' : '**NOT identical**'} | ${r.entries} | ${r.contentProblems} | ${r.metadataDifferences} |`,
    );
  L.push('');
  const targets = results.targets ?? [];
  if (targets.length) {
    L.push('Issue 4 targets (forge against restic):');
    L.push('');
    L.push('| target | required | measured | met? |');
    L.push('|---|---|---|---|');
    for (const t of targets)
      L.push(
        `| ${t.target} | ${t.required} | ${t.measured} | ${t.met ? 'met' : `**not met**${t.shortBy ? `: ${t.shortBy}` : ''}`} |`,
      );
    L.push('');
  }
  if (results.failures.length) {
    L.push('Failed commands:');
    L.push('');
    for (const f of results.failures)
      L.push(`- ${f.tool} ${f.phase}: exit ${f.exit}: \`${f.stderr.split('\n').slice(-1)[0]}\``);
    L.push('');
  }
  if (results.profile) L.push(profileMarkdown(results.profile));
  return L.join('\n');
}

function write() {
  results.targets = evaluateTargets();
  mkdirSync(opts.out, { recursive: true });
  const stamp = results.startedAt.replace(/[:]/g, '').replace(/\..*/, '');
  const base = join(opts.out, `bench-${stamp}-scale${opts.scale}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  const md = markdown();
  writeFileSync(`${base}.md`, `${md}\n`);
  process.stdout.write(`${md}\n`);
  log(`results: ${base}.json, ${base}.md`);
}

let code = 0;
try {
  await main();
} catch (e) {
  code = 1;
  results.fatal = String(e?.stack ?? e);
  log(`FATAL: ${results.fatal}`);
}
try {
  if (results.steps.length) write();
} finally {
  if (!opts.keep) rmSync(W, { recursive: true, force: true });
  else log(`kept ${W}`);
}
if (results.failures.length) code = code || 1;
// --remote: forge over S3 and SFTP on loopback (remote.mjs), after the side-by-side table.
if (opts.remote) {
  const r = spawnSync(
    process.execPath,
    [
      join(HERE, 'remote.mjs'),
      '--scale',
      String(opts.remoteScale),
      '--seed',
      String(opts.seed),
      '--out',
      opts.out,
    ],
    { stdio: 'inherit' },
  );
  if (r.status !== 0) code = code || 1;
}
process.exit(code);
