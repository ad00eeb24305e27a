import type { Context } from '../context.ts';
import { ExitCode } from '../exit-codes.ts';
import { formatTime, table } from '../format.ts';

export async function keyListCommand(ctx: Context): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const keys = await repo.listKeys();
    if (ctx.out.json) {
      for (const k of keys) ctx.out.emit({ message_type: 'key', ...k });
      return ExitCode.OK;
    }
    const rows = [[' ', 'ID', 'User', 'Host', 'Created']];
    for (const k of keys)
      rows.push([k.current ? '*' : ' ', k.id.slice(0, 8), k.username, k.hostname, formatTime(k.created)]);
    ctx.out.line(table(rows));
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}

export interface NewPasswordOptions {
  newPasswordFile?: string;
}

export async function keyAddCommand(ctx: Context, opts: NewPasswordOptions): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const id = await repo.addKey(await ctx.newPassword(opts.newPasswordFile));
    ctx.out.emit({ message_type: 'key_added', id });
    ctx.out.info(`added key ${id.slice(0, 8)}`);
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}

export async function keyPasswdCommand(ctx: Context, opts: NewPasswordOptions): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const old = repo.keyId;
    const id = await repo.changePassword(await ctx.newPassword(opts.newPasswordFile));
    ctx.out.emit({ message_type: 'key_changed', id, removed: old });
    ctx.out.info(`password changed: key ${old.slice(0, 8)} replaced by ${id.slice(0, 8)}`);
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}

export async function keyRemoveCommand(ctx: Context, id: string, opts: { force?: boolean }): Promise<number> {
  const repo = await ctx.openRepository();
  try {
    const removed = await repo.removeKey(id, { force: opts.force ?? false });
    ctx.out.emit({ message_type: 'key_removed', id: removed });
    ctx.out.info(`removed key ${removed.slice(0, 8)}`);
    return ExitCode.OK;
  } finally {
    await repo.close();
  }
}
