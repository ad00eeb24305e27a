import { toForgeError } from '@backupforge/common';
import { ENGINE_VERSION } from '@backupforge/engine';
import { Command, CommanderError } from 'commander';
import { backupCommand } from './commands/backup.ts';
import { diffCommand, dumpCommand, lsCommand, statsCommand } from './commands/browse.ts';
import { checkCommand } from './commands/check.ts';
import { copyCommand } from './commands/copy.ts';
import { forgetCommand } from './commands/forget.ts';
import { initCommand } from './commands/init.ts';

// The job commands (forge.toml, the store, notifiers) load only when one of them runs.
const jobs = () => import('./commands/jobs.ts');

import { keyAddCommand, keyListCommand, keyPasswdCommand, keyRemoveCommand } from './commands/key.ts';
import { pruneCommand } from './commands/prune.ts';
import { repairIndexCommand, repairSnapshotsCommand } from './commands/repair.ts';
import { restoreCommand } from './commands/restore.ts';
import { snapshotsCommand } from './commands/snapshots.ts';
import { unlockCommand } from './commands/unlock.ts';
import { Context, type GlobalOptions, type Io } from './context.ts';
import { ExitCode, exitCodeFor } from './exit-codes.ts';

const collect = (v: string, prev: string[] = []) => [...prev, v];

function filterOptions(cmd: Command): Command {
  return cmd
    .option('--host <host>', 'only snapshots of this host (repeatable)', collect)
    .option(
      '--tag <tags>',
      'only snapshots with these tags, comma-separated = all of them (repeatable = any)',
      collect,
    )
    .option('--path <path>', 'only snapshots that include this path (repeatable)', collect);
}

export interface RunOptions {
  readonly io: Io;
  readonly signal?: AbortSignal;
}

/**
 * Runs the forge CLI with `argv` (without the node and script entries) and resolves with the
 * exit code. Never throws and never calls process.exit, so tests call it directly.
 */
export async function runCli(
  argv: readonly string[],
  { io, signal = new AbortController().signal }: RunOptions,
): Promise<number> {
  let code: number = ExitCode.OK;
  let ctx: Context | undefined;
  const program = new Command('forge');
  const run =
    <A extends unknown[]>(fn: (ctx: Context, ...args: A) => Promise<number>) =>
    async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      ctx = new Context(io, cmd.optsWithGlobals() as GlobalOptions, signal);
      code = await fn(ctx, ...(args.slice(0, -1) as A));
    };

  program
    .description('BackupForge: deduplicated, compressed, encrypted backups')
    .version(ENGINE_VERSION, '-V, --version')
    .option(
      '-r, --repo <location>',
      'repository location (default: $FORGE_REPOSITORY, else ~/.local/share/backupforge/repository)',
    )
    .option('--password-file <file>', 'read the password from a file (or $FORGE_PASSWORD_FILE)')
    .option(
      '--password-command <command>',
      'run a command that prints the password (or $FORGE_PASSWORD_COMMAND)',
    )
    .option('--json', 'print JSON lines on stdout (progress, warnings, summary)')
    .option('-v, --verbose', 'print summaries even without a terminal (e.g. under cron)')
    .option('-q, --quiet', 'print nothing but errors and warnings')
    .option('--debug', 'print stack traces for errors')
    .option(
      '-o, --option <key=value>',
      'backend setting, e.g. s3.region=eu-west-1, s3.storage-class=STANDARD_IA, sftp.connections=4 (repeatable)',
      collect,
    )
    .option('--insecure-host-key', 'SFTP: accept any host key (unsafe: no protection against impostors)')
    .option('--limit-upload <KiB/s>', 'limit uploads to the repository')
    .option('--limit-download <KiB/s>', 'limit downloads from the repository')
    .option('--cache-dir <dir>', 'cache for remote repositories (default: $XDG_CACHE_HOME/backupforge)')
    .option('--no-cache', 'do not use the local cache for remote repositories')
    .option(
      '-c, --config <file>',
      'forge.toml for run/jobs/runs/daemon/schedule (default: $FORGE_CONFIG, ./forge.toml, ~/.config/backupforge/forge.toml)',
    )
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .addHelpText(
      'after',
      `
Password: FORGE_PASSWORD, FORGE_PASSWORD_FILE, FORGE_PASSWORD_COMMAND, --password-file,
--password-command, or a prompt on a terminal (FORGE_FROM_PASSWORD… for copy --from-repo).
Repositories: a path, s3:https://host/bucket/prefix, s3:bucket/prefix (AWS), sftp:user@host[:port]/path,
rclone:remote:path, rest:https://host/path; credentials from the usual env vars (AWS_*, ssh agent).
Exit codes: 0 ok, 1 fatal error, 2 usage, 3 partial (some files unreadable),
10 repository missing or invalid, 11 repository locked, 12 wrong password, 130 interrupted;
forge run also: 13 the job is already running, 14 skipped by its before hook.`,
    );

  program
    .command('init')
    .description('create a new repository')
    .option('--compression <algo>', 'default compression: zstd[:level], lz4 or none', 'zstd:3')
    .option(
      '--copy-chunker-params-from <location>',
      'use the chunker parameters of this repository, so copies between the two deduplicate',
    )
    .option('--from-password-file <file>', 'password file of that repository (or $FORGE_FROM_PASSWORD_FILE)')
    .option(
      '--from-password-command <command>',
      'command printing its password (or $FORGE_FROM_PASSWORD_COMMAND)',
    )
    .action(run(initCommand));

  filterOptions(
    program
      .command('copy')
      .description('copy snapshots from another repository into this one (skips those already copied)')
      .argument('[snapshots...]', "snapshot ids, prefixes or 'latest' (default: all)")
      .requiredOption('--from-repo <location>', 'the repository to copy from')
      .option('--from-password-file <file>', 'its password file (or $FORGE_FROM_PASSWORD_FILE)')
      .option(
        '--from-password-command <command>',
        'a command printing its password (or $FORGE_FROM_PASSWORD_COMMAND)',
      )
      .option('-n, --dry-run', 'show what would be copied'),
  ).action(run(copyCommand));

  program
    .command('backup')
    .description('back up files and directories (creates the default repository on first use)')
    .argument('[paths...]', 'files and directories to back up')
    .option('--tag <tags>', 'add tags (comma-separated, repeatable)', collect)
    .option('--host <host>', 'hostname to record (default: this host)')
    .option('-n, --dry-run', 'do everything but write to the repository')
    .option('--stdin', 'back up what is read from standard input')
    .option('--stdin-filename <name>', 'file name for --stdin', 'stdin')
    .option('-e, --exclude <pattern>', 'exclude paths matching the pattern (repeatable)', collect)
    .option('--iexclude <pattern>', 'like --exclude, ignoring case', collect)
    .option('--exclude-file <file>', 'read exclude patterns from a file (repeatable)', collect)
    .option(
      '--exclude-if-present <name[:header]>',
      'exclude directories containing this file (repeatable)',
      collect,
    )
    .option('-x, --one-file-system', 'do not cross filesystem boundaries')
    .option(
      '--parent <snapshot>',
      'use this snapshot as the parent (default: latest of the same host and paths)',
    )
    .option('-f, --force', 'read every file, ignoring the parent snapshot')
    .action(run(backupCommand));

  filterOptions(program.command('snapshots').alias('list').description('list snapshots')).action(
    run(snapshotsCommand),
  );

  filterOptions(
    program
      .command('ls')
      .description('list files in a snapshot')
      .argument('<snapshot>', "snapshot id, id prefix or 'latest'")
      .argument('[path]', 'directory or file inside the snapshot', '/')
      .option('-l, --long', 'show mode, owner, size and time')
      .option('--no-recursive', 'list only the given directory'),
  ).action(run(lsCommand));

  filterOptions(
    program
      .command('restore')
      .description('restore a snapshot, or a path in it, into a directory')
      .argument('<snapshot[:path]>', "snapshot id, prefix or 'latest', optionally with :/path/inside")
      .requiredOption('-t, --target <dir>', 'directory to restore into (must be empty unless --overwrite)')
      .option('-i, --include <pattern>', 'restore only matching paths (repeatable)', collect)
      .option('--iinclude <pattern>', 'like --include, ignoring case', collect)
      .option('-e, --exclude <pattern>', 'do not restore matching paths (repeatable)', collect)
      .option('--iexclude <pattern>', 'like --exclude, ignoring case', collect)
      .option('--verify', 'read restored files back and compare them with the snapshot')
      .option('--overwrite', 'allow restoring into a non-empty directory, replacing files in the way'),
  ).action(run(restoreCommand));

  filterOptions(
    program
      .command('dump')
      .description('write one file from a snapshot to stdout')
      .argument('<snapshot>', "snapshot id, prefix or 'latest'")
      .argument('<file>', 'path of the file inside the snapshot'),
  ).action(run(dumpCommand));

  filterOptions(
    program
      .command('diff')
      .description('show what changed between two snapshots')
      .argument('<snapshotA>', 'older snapshot')
      .argument('<snapshotB>', 'newer snapshot'),
  ).action(run(diffCommand));

  filterOptions(
    program
      .command('stats')
      .description('show sizes, deduplication and compression of the repository or of snapshots')
      .argument('[snapshots...]', "snapshot ids or 'latest' (default: all)"),
  ).action(run(statsCommand));

  filterOptions(
    program
      .command('forget')
      .description('remove snapshots by id or by a retention policy (their data is freed by prune)')
      .argument('[snapshots...]', 'snapshot ids to remove')
      .option('--keep-last <n>', 'keep the n newest snapshots')
      .option('--keep-hourly <n>', 'keep the newest snapshot of each of the last n hours that have one')
      .option('--keep-daily <n>', 'keep one per day for the last n days that have one')
      .option('--keep-weekly <n>', 'keep one per ISO week for the last n weeks that have one')
      .option('--keep-monthly <n>', 'keep one per month for the last n months that have one')
      .option('--keep-yearly <n>', 'keep one per year for the last n years that have one')
      .option(
        '--keep-within <duration>',
        'keep everything within this duration of the newest snapshot (e.g. 2y5m7d3h)',
      )
      .option('--keep-within-hourly <duration>', 'keep hourly snapshots within the duration')
      .option('--keep-within-daily <duration>', 'keep daily snapshots within the duration')
      .option('--keep-within-weekly <duration>', 'keep weekly snapshots within the duration')
      .option('--keep-within-monthly <duration>', 'keep monthly snapshots within the duration')
      .option('--keep-within-yearly <duration>', 'keep yearly snapshots within the duration')
      .option(
        '--keep-tag <tags>',
        'keep snapshots with all these tags (comma-separated; repeatable)',
        collect,
      )
      .option('--group-by <fields>', 'apply the policy per group of host, paths, tags', 'host,paths')
      .option('-n, --dry-run', 'show what would be removed, and why the rest is kept')
      .option('--prune', 'run prune afterwards')
      .option(
        '--max-unused <limit>',
        "with --prune: unused space to tolerate, e.g. '5%' or 'unlimited'",
        '5%',
      )
      .option(
        '--max-wait <duration>',
        'with --prune: how long to wait for running backups before deleting',
        '0s',
      ),
  ).action(run(forgetCommand));

  program
    .command('prune')
    .description('delete data no snapshot uses (backups keep running meanwhile)')
    .option('-n, --dry-run', 'show the plan (bytes to delete and repack), change nothing')
    .option('--max-unused <limit>', "unused space to tolerate in kept packs, e.g. '5%' or 'unlimited'", '5%')
    .option(
      '--max-wait <duration>',
      "how long to wait for backups that started before prune (e.g. '10m'); default: don't wait, defer",
      '0s',
    )
    .action(run(pruneCommand));

  program
    .command('check')
    .description('verify the repository: structure, and with --read-data every byte')
    .option('--read-data', 'download and verify all data')
    .option(
      '--read-data-subset <subset>',
      "verify a subset of the data: '10%' (random) or '2/5' (group 2 of 5)",
    )
    .action(run(checkCommand));

  const key = program.command('key').description('manage the passwords (key files) that open the repository');
  key.command('list').description('list keys (* marks the one used now)').action(run(keyListCommand));
  key
    .command('add')
    .description('add a key for another password (FORGE_NEW_PASSWORD, --new-password-file or prompt)')
    .option('--new-password-file <file>', 'read the new password from a file')
    .action(run(keyAddCommand));
  key
    .command('passwd')
    .description('change the password of the key in use')
    .option('--new-password-file <file>', 'read the new password from a file')
    .action(run(keyPasswdCommand));
  key
    .command('remove')
    .description('remove a key (never the last one; the one in use only with --force)')
    .argument('<id>', 'key id or prefix')
    .option('--force', 'allow removing the key in use')
    .action(run(keyRemoveCommand));

  const repair = program.command('repair').description('repair a damaged repository');
  repair
    .command('index')
    .description(
      'rebuild the index from the pack headers (safe: new index files are written before old ones go)',
    )
    .option('-n, --dry-run', 'only report what would change')
    .action(run(repairIndexCommand));
  repair
    .command('snapshots')
    .description("rewrite snapshots that reference missing data, keeping what remains (tag 'repaired')")
    .option('-n, --dry-run', 'only report which snapshots and paths are damaged')
    .option('--forget', 'remove the damaged originals after writing the repaired snapshots')
    .action(run(repairSnapshotsCommand));

  program
    .command('run')
    .description(
      'run a job of forge.toml end to end (backup, forget/prune, check, hooks, notifications); for cron',
    )
    .argument('<job>', 'job name ([jobs.NAME] in forge.toml)')
    .action(run(async (ctx, job: string) => (await jobs()).runCommand(ctx, job)));

  program
    .command('jobs')
    .description('list the jobs of forge.toml with their next and last run')
    .action(run(async (ctx) => (await jobs()).jobsCommand(ctx)));

  program
    .command('runs')
    .description('show the run history (newest first)')
    .argument('[job]', 'only this job')
    .option('--limit <n>', 'how many runs', '20')
    .action(
      run(async (ctx, job: string | undefined, o: { limit?: string }) =>
        (await jobs()).runsCommand(ctx, job, o),
      ),
    );

  program
    .command('daemon')
    .description('run the scheduled jobs of forge.toml (a built-in scheduler; stop with SIGTERM)')
    .option(
      '--grace <seconds>',
      'on SIGTERM, how long a running job may take to finish before it is aborted',
      '60',
    )
    .action(run(async (ctx, o: { grace?: string }) => (await jobs()).daemonCommand(ctx, o)));

  const schedule = program.command('schedule').description('scheduling helpers');
  schedule
    .command('print')
    .description('print systemd units or crontab lines for the scheduled jobs')
    .option('--systemd', 'systemd .service + .timer units')
    .option('--cron', 'crontab lines')
    .option('--forge-command <path>', 'how cron/systemd should start forge', 'forge')
    .action(
      run(async (ctx, o: { systemd?: boolean; cron?: boolean; forgeCommand?: string }) =>
        (await jobs()).schedulePrintCommand(ctx, o),
      ),
    );

  const catalog = program.command('catalog').description('the snapshot catalog of the metadata store');
  catalog
    .command('rebuild')
    .description('recreate the catalog of a repository from the repository itself')
    .argument('[repository]', 'a repository name of forge.toml (default: -r / the default repository)')
    .option('--no-files', 'snapshots only, no file listings')
    .action(
      run(async (ctx, repo: string | undefined, o: { files?: boolean }) =>
        (await jobs()).catalogRebuildCommand(ctx, repo, o),
      ),
    );

  program
    .command('unlock')
    .description('remove stale locks (left by crashed or killed runs)')
    .option('--remove-all', 'remove all locks, even live ones (only when you know no forge is running)')
    .action(run(unlockCommand));

  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return code;
  } catch (e) {
    code = reportError(e);
    return code;
  } finally {
    await ctx?.closeAll();
  }

  function reportError(e: unknown): number {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      )
        return ExitCode.OK;
      return ExitCode.USAGE; // commander already printed one line
    }
    const fe = toForgeError(e);
    const out = ctx?.out;
    const debug = ctx?.opts.debug || argv.includes('--debug');
    const extra = { code: fe.code, ...(fe.hint ? { hint: fe.hint } : {}) };
    if (out) out.error(fe.toOneLine(), extra);
    else io.stderr.write(`error: ${fe.toOneLine()}\n`);
    if (debug) io.stderr.write(`${(fe.cause instanceof Error ? fe.cause : fe).stack ?? ''}\n`);
    if (fe.code === 'FORGE_INTERNAL' && !debug) io.stderr.write('run with --debug for details\n');
    return exitCodeFor(fe.code);
  }
}
