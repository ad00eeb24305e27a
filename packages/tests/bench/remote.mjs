#!/usr/bin/env node
// The S3 and SFTP columns of `pnpm bench` (issue 5): forge's first backup, full restore and
// `check --read-data` of the benchmark corpus into a local repository, S3 (OpenStack Swift with
// s3api) and SFTP (OpenSSH sshd), all on loopback, with MB/s per phase.
//
//   node scripts/run.mjs node packages/tests/bench/remote.mjs [--scale 0.05] [--seed 42]
//        [--work /tmp/forge-bench-remote] [--out bench-results]
//   (`npm run bench -- --remote` runs it after the main table, at --remote-scale)
//
// The servers come from .ci/infra.sh (started here when FORGE_TEST_* are not set; needs root on
// Debian). Every restore is compared with the corpus (diff -r). Results: JSON + Markdown in --out.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { genTree } from './corpus.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../../..');
const FORGE = join(ROOT, 'apps', 'forge', 'dist', 'main.js');
const MB = 1e6;
const log = (m) => process.stderr.write(`[bench-remote ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

function parseArgs(argv) {
  const o = { scale: 0.05, seed: 42, work: '/tmp/forge-bench-remote', out: join(ROOT, 'bench-results') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => argv[++i];
    if (a === '--scale') o.scale = Number(val());
    else if (a === '--seed') o.seed = Number(val());
    else if (a === '--work') o.work = resolve(val());
    else if (a === '--out') o.out = resolve(val());
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

function infraEnv() {
  if (process.env.FORGE_TEST_S3_ENDPOINT && process.env.FORGE_TEST_SFTP_HOST) return process.env;
  const infra = process.env.INFRA || '/tmp/backupforge-infra';
  const r = spawnSync('bash', [join(ROOT, '.ci', 'infra.sh'), 'up'], {
    stdio: 'inherit',
    env: { ...process.env, INFRA: infra },
  });
  if (r.status !== 0)
    throw new Error('could not start the loopback servers (.ci/infra.sh up needs root on Debian)');
  const env = { ...process.env };
  for (const line of readFileSync(join(infra, 'env'), 'utf8').split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
  return env;
}

function timed(args, env) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [FORGE, ...args], {
    env,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`forge ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-1000)}`);
  return { seconds, stdout: r.stdout };
}

function corpusBytes(stdout) {
  const summary = stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .find((l) => l.message_type === 'summary');
  return summary?.total_bytes_processed ?? 0;
}

const opts = parseArgs(process.argv.slice(2));
const env0 = infraEnv();
rmSync(opts.work, { recursive: true, force: true });
mkdirSync(opts.work, { recursive: true });
const corpus = join(opts.work, 'corpus');
log(`corpus at scale ${opts.scale}`);
genTree(corpus, opts.seed, opts.scale);
const tag = randomBytes(4).toString('hex');
const base = { ...env0, FORGE_PASSWORD: 'bench-remote', XDG_CACHE_HOME: join(opts.work, 'cache') };
const targets = [
  { name: 'local disk', repo: join(opts.work, 'repo-local'), flags: [], env: base },
  {
    name: 'S3 (Swift s3api, loopback)',
    repo: `s3:${env0.FORGE_TEST_S3_ENDPOINT}/bench-${tag}/repo`,
    flags: [],
    env: {
      ...base,
      AWS_ACCESS_KEY_ID: env0.FORGE_TEST_S3_ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: env0.FORGE_TEST_S3_SECRET_KEY,
      AWS_REGION: env0.FORGE_TEST_S3_REGION ?? 'us-east-1',
    },
  },
  {
    name: 'SFTP (OpenSSH, loopback)',
    repo: `sftp:${env0.FORGE_TEST_SFTP_USER}@${env0.FORGE_TEST_SFTP_HOST}:${env0.FORGE_TEST_SFTP_PORT}${join(env0.FORGE_TEST_SFTP_ROOT, `bench-${tag}`)}`,
    flags: [
      '-o',
      `sftp.identity=${env0.FORGE_TEST_SFTP_KEY}`,
      '-o',
      `sftp.known-hosts=${env0.FORGE_TEST_SFTP_KNOWN_HOSTS}`,
    ],
    env: base,
  },
];

const rows = [];
for (const t of targets) {
  log(`${t.name}: init, backup, restore, check --read-data`);
  timed(['-r', t.repo, ...t.flags, 'init'], t.env);
  const b = timed(['-r', t.repo, ...t.flags, 'backup', '--json', corpus], t.env);
  const bytes = corpusBytes(b.stdout);
  const target = join(opts.work, `restore-${rows.length}`);
  const r = timed(['-r', t.repo, ...t.flags, 'restore', 'latest', '--target', target, '--quiet'], t.env);
  const diff = spawnSync('diff', ['-r', '-q', '--no-dereference', corpus, join(target, corpus)], {
    encoding: 'utf8',
  });
  if (diff.status !== 0)
    throw new Error(
      `${t.name}: the restore differs from the corpus:\n${(diff.stdout + diff.stderr).slice(0, 2000)}`,
    );
  rmSync(target, { recursive: true, force: true });
  const c = timed(['-r', t.repo, ...t.flags, 'check', '--read-data'], t.env);
  rows.push({
    target: t.name,
    bytes,
    backupSeconds: b.seconds,
    backupMBps: bytes / MB / b.seconds,
    restoreSeconds: r.seconds,
    restoreMBps: bytes / MB / r.seconds,
    checkSeconds: c.seconds,
  });
}

const stamp = new Date().toISOString().replace(/[:.]/g, '').slice(0, 17);
const md = [
  `### Remote repositories: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, scale ${opts.scale} (${(rows[0].bytes / MB).toFixed(1)} MB)`,
  '',
  'forge defaults (zstd, encryption), fresh repositories, servers on 127.0.0.1; restores verified with `diff -r`.',
  '',
  '| repository | first backup s | MB/s | full restore s | MB/s | check --read-data s |',
  '|---|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${r.target} | ${r.backupSeconds.toFixed(2)} | ${r.backupMBps.toFixed(1)} | ${r.restoreSeconds.toFixed(2)} | ${r.restoreMBps.toFixed(1)} | ${r.checkSeconds.toFixed(2)} |`,
  ),
  '',
].join('\n');
mkdirSync(opts.out, { recursive: true });
writeFileSync(
  join(opts.out, `bench-remote-${stamp}-scale${opts.scale}.json`),
  `${JSON.stringify(rows, null, 2)}\n`,
);
writeFileSync(join(opts.out, `bench-remote-${stamp}-scale${opts.scale}.md`), md);
process.stdout.write(md);
if (existsSync(opts.work)) rmSync(opts.work, { recursive: true, force: true });
