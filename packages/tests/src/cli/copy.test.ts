// `forge copy --from-repo` and `forge init --copy-chunker-params-from`, through the built binary.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../support/cli.ts';
import { dirState, expectCleanError, expectOnlyJson, forgePw, makeFixture, pseudoRandom } from './helpers.ts';

const FROM = { FORGE_FROM_PASSWORD: 'the-source-password' };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function summary(stdout: string): Record<string, unknown> {
  const lines = expectOnlyJson(stdout);
  const s = lines.find((l) => l.message_type === 'summary');
  expect(s, stdout).toBeTruthy();
  return s!;
}

async function setup() {
  const t = await tempDir('forge-copy-');
  cleanups.push(t.cleanup);
  const src = join(t.path, 'src');
  await mkdir(src);
  await makeFixture(src);
  await writeFile(join(src, 'big.bin'), pseudoRandom(3_000_000, 9));
  const a = join(t.path, 'a');
  const initA = await forgePw(['init', '-r', a], { env: { FORGE_PASSWORD: FROM.FORGE_FROM_PASSWORD } });
  expect(initA.code, initA.stderr).toBe(0);
  const b1 = await forgePw(['backup', '-r', a, src, '--json'], {
    env: { FORGE_PASSWORD: FROM.FORGE_FROM_PASSWORD },
  });
  expect(b1.code, b1.stderr).toBe(0);
  return { base: t.path, src, a };
}

describe('forge copy', () => {
  it('copies snapshots with the same chunker params, skips them the second time, and restores identically', async () => {
    const { base, src, a } = await setup();
    const b = join(base, 'b');
    const init = await forgePw(['init', '-r', b, '--copy-chunker-params-from', a], { env: FROM });
    expect(init.code, init.stderr).toBe(0);

    const copy = await forgePw(['copy', '-r', b, '--from-repo', a, '--json'], { env: FROM });
    expect(copy.code, copy.stderr).toBe(0);
    const s1 = summary(copy.stdout);
    expect(s1).toMatchObject({ copied: 1, skipped: 0, chunking: 'same' });
    expect(Number(s1.data_added)).toBeGreaterThan(3_000_000);

    const again = await forgePw(['copy', '-r', b, '--from-repo', a, '--json'], { env: FROM });
    expect(again.code, again.stderr).toBe(0);
    expect(summary(again.stdout)).toMatchObject({ copied: 0, skipped: 1, data_added: 0 });

    const target = join(base, 'restored');
    const r = await forgePw(['restore', '-r', b, 'latest', '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    expect(await dirState(join(target, src))).toEqual(await dirState(src));

    // Same chunker: a backup of the same files into the copy's repository stores no file data
    // (only trees: they record access times, which the first backup's reads changed).
    const backup = await forgePw(['backup', '-r', b, '--force', src, '--json']);
    expect(backup.code, backup.stderr).toBe(0);
    expect(summary(backup.stdout).data_blobs).toBe(0);
  });

  it('re-chunks into a repository with other chunker params, and says so', async () => {
    const { base, src, a } = await setup();
    const c = join(base, 'c');
    expect((await forgePw(['init', '-r', c])).code).toBe(0);
    const copy = await forgePw(['copy', '-r', c, '--from-repo', a, '--json'], { env: FROM });
    expect(copy.code, copy.stderr).toBe(0);
    expect(summary(copy.stdout)).toMatchObject({ copied: 1, chunking: 'rechunk' });
    const target = join(base, 'restored');
    expect((await forgePw(['restore', '-r', c, 'latest', '--target', target])).code).toBe(0);
    expect(await dirState(join(target, src))).toEqual(await dirState(src));
  });

  it('a wrong source password and a missing source repository are clean errors', async () => {
    const { base, a } = await setup();
    const b = join(base, 'b');
    expect((await forgePw(['init', '-r', b])).code).toBe(0);
    expectCleanError(
      await forgePw(['copy', '-r', b, '--from-repo', a, '--json'], { env: { FORGE_FROM_PASSWORD: 'nope' } }),
      12,
      'FORGE_WRONG_PASSWORD',
    );
    expectCleanError(
      await forgePw(['copy', '-r', b, '--from-repo', join(base, 'missing'), '--json'], { env: FROM }),
      10,
      'FORGE_REPO_NOT_FOUND',
    );
    const noFrom = await forgePw(['copy', '-r', b]);
    expect(noFrom.code).toBe(2);
    expect(noFrom.stderr).toContain('--from-repo');
  });
});
