#!/usr/bin/env node
// CPU profile of a forge first backup (issue 4), main thread and worker threads.
//
//   node scripts/run.mjs node packages/tests/bench/cpu-profile.mjs [--src DIR | --scale 1 --seed 42]
//        [--work /tmp/forge-bench-prof] [--keep]
//   (run.mjs --profile does the same inside the side-by-side benchmark)
//
// Inits a fresh repository, drops the page cache (when allowed), then runs
//   node --cpu-prof --cpu-prof-dir=DIR --import cpu-prof-preload.mjs apps/forge/dist/main.js backup SRC
// and prints the top self-time functions, over all threads and per thread. Without --src it
// generates the benchmark tree (corpus.mjs tree) first. cpu-prof-preload.mjs passes the
// --cpu-prof flags on to the engine's pool workers (which set their own execArgv and would
// otherwise not be profiled), so every thread writes a profile.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../../..');
const FORGE = join(ROOT, 'apps', 'forge', 'dist', 'main.js');
const PRELOAD = join(HERE, 'cpu-prof-preload.mjs');

/** Runs one forge first backup of `src` under the profiler; returns { seconds, exit, ...summary }. */
export function profileForgeBackup({ src, work, env = process.env, node = process.execPath }) {
  const repo = join(work, 'repo-profile');
  const dir = join(work, 'cpu-prof');
  rmSync(repo, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const init = spawnSync(node, [FORGE, '-r', repo, 'init'], { env, encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`forge init failed: ${init.stderr}`);
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
  } catch {
    // not permitted: the profile is taken with a warm cache
  }
  const t0 = performance.now();
  const r = spawnSync(
    node,
    ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--import', PRELOAD, FORGE, '-r', repo, 'backup', src],
    { env, encoding: 'utf8' },
  );
  const seconds = (performance.now() - t0) / 1000;
  rmSync(repo, { recursive: true, force: true });
  return { seconds, exit: r.status, stderr: r.stderr.slice(-2000), ...summariseProfiles(dir) };
}

/** Self time per function (name + file:line), per thread and overall, from .cpuprofile files. */
export function summariseProfiles(dir) {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const threads = [];
  const total = new Map();
  for (const f of files) {
    const prof = JSON.parse(readFileSync(join(dir, f), 'utf8'));
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    const self = new Map();
    for (let i = 0; i < prof.samples.length; i++) {
      const cf = byId.get(prof.samples[i]).callFrame;
      const dt = (prof.timeDeltas[i] ?? 0) / 1000; // µs → ms
      const file = cf.url ? cf.url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '') : '';
      const key = `${cf.functionName || '(anonymous)'} ${file ? `${file}:${cf.lineNumber + 1}` : ''}`.trim();
      self.set(key, (self.get(key) ?? 0) + dt);
      total.set(key, (total.get(key) ?? 0) + dt);
    }
    const ms = [...self.values()].reduce((a, b) => a + b, 0);
    const idleMs = self.get('(idle)') ?? 0;
    self.delete('(idle)');
    // file name: CPU.<date>.<time>.<pid>.<threadId>.<seq>.cpuprofile; thread 0 is the main thread
    const tid = Number(f.split('.')[4]);
    threads.push({
      file: f,
      thread: tid === 0 ? 'main' : `worker ${tid}`,
      sampledMs: Math.round(ms),
      idlePct: +((100 * idleMs) / ms).toFixed(1),
      top: top(self, ms, 10),
    });
  }
  threads.sort((a, b) => (a.thread === 'main' ? -1 : b.thread === 'main' ? 1 : b.sampledMs - a.sampledMs));
  const all = [...total.values()].reduce((a, b) => a + b, 0);
  const idle = total.get('(idle)') ?? 0;
  total.delete('(idle)');
  // percentages are of all sampled time (idle included); (idle) itself is left out of the ranking
  return {
    profileDir: dir,
    threads,
    idlePct: +((100 * idle) / all).toFixed(1),
    overallTop: top(total, all, 15),
  };
}

function top(map, totalMs, n) {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([fn, ms]) => ({ fn, ms: Math.round(ms), pct: +((100 * ms) / totalMs).toFixed(1) }));
}

/** Markdown for a profileForgeBackup() result. */
export function profileMarkdown(p) {
  const L = [];
  L.push(
    `CPU profile of a forge first backup (${p.seconds.toFixed(2)} s under --cpu-prof, exit ${p.exit}), ` +
      `top self time summed over all threads (% of all sampled time; ${p.idlePct}% of it was idle):`,
  );
  L.push('');
  L.push('| function | self ms | % |');
  L.push('|---|---:|---:|');
  for (const t of p.overallTop) L.push(`| \`${t.fn}\` | ${t.ms} | ${t.pct} |`);
  L.push('');
  for (const th of p.threads)
    L.push(
      `- ${th.thread} (${th.sampledMs} ms sampled, ${th.idlePct}% idle): ${th.top
        .slice(0, 6)
        .map((t) => `\`${t.fn}\` ${t.pct}%`)
        .join(', ')}`,
    );
  L.push('');
  return L.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const o = { scale: 1, seed: 42, work: '/tmp/forge-bench-prof', src: undefined, keep: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--scale') o.scale = Number(args[++i]);
    else if (a === '--seed') o.seed = Number(args[++i]);
    else if (a === '--work') o.work = resolve(args[++i]);
    else if (a === '--src') o.src = resolve(args[++i]);
    else if (a === '--keep') o.keep = true;
    else throw new Error(`unknown argument ${a}`);
  }
  mkdirSync(o.work, { recursive: true });
  let src = o.src;
  if (!src) {
    const { genTree } = await import('./corpus.mjs');
    src = join(o.work, 'tree');
    rmSync(src, { recursive: true, force: true });
    genTree(src, o.seed, o.scale);
  }
  const env = { ...process.env, FORGE_PASSWORD: process.env.FORGE_PASSWORD || 'bench-profile' };
  const p = profileForgeBackup({ src, work: o.work, env });
  process.stdout.write(`${profileMarkdown(p)}\n`);
  writeFileSync(join(o.work, 'profile-summary.json'), `${JSON.stringify(p, null, 2)}\n`);
  if (!o.keep) rmSync(o.work, { recursive: true, force: true });
}
