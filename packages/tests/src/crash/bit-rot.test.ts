// Reliability scenario 4: bit-rot detection. For each object type (pack blob area, pack header,
// index, snapshot, key — alone and with a second key —, config) one random bit of one random
// object is flipped in a fresh copy of a small repository, then:
// - `forge check --read-data` fails and names the damaged object (for key and config: opening
//   the repository fails; with two keys the undamaged one still opens);
// - the same check on the undamaged copy is clean (no false positives);
// - restores never write wrong bytes: unaffected files restore byte-identically, affected ones
//   are not written (or, for a damaged index, everything restores after `forge repair index`).
//
// FORGE_BITROT_TRIALS=20 for 20 trials per type (default 4); FORGE_CRASH_SEED=<n> replays.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { walkSnapshot } from '@backupforge/engine';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonLines, tempDir } from '../support/cli.ts';
import {
  cliRestore,
  copyRepo,
  envCount,
  expectCleanCheck,
  expectCliRestore,
  FAST_KDF,
  forgeCheck,
  forgeRun,
  initFastRepo,
  type Manifest,
  objectNames,
  openFsRepo,
  PASSWORD,
  packPath,
  Rng,
  SourceTree,
  sorted,
  testSeed,
} from './support.ts';

const TRIALS = envCount('FORGE_BITROT_TRIALS', 4);
const MiB = 1024 * 1024;
const PASSWORD2 = 'second-password-for-bit-rot';

type ObjType = 'pack-data' | 'pack-header' | 'index' | 'snapshot' | 'key' | 'key-of-two' | 'config';

interface Fixture {
  base: string;
  template: string;
  src: string;
  /** Snapshot id → source manifest. */
  snapshots: Map<string, Manifest>;
  /** Snapshot id → relative path → data blob ids. */
  files: Map<string, Map<string, string[]>>;
  /** Snapshot id → every tree blob it uses. */
  trees: Map<string, Set<string>>;
  /** Pack id → its blobs (from the index). */
  packs: Map<string, { id: string; type: string; offset: number; length: number }[]>;
}

let fx: Fixture;
let seed: number;
let rng: Rng;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  seed = testSeed('bit-rot');
  rng = new Rng(seed);
  const t = await tempDir('forge-bitrot-');
  cleanups.push(t.cleanup);
  const template = join(t.path, 'template');
  const src = join(t.path, 'src');
  const tree = new SourceTree(src, rng);
  await tree.generate({ small: 40, smallMax: 20_000, big: 2, bigSize: 3 * MiB });
  // Small packs: several packs per backup, so damage in one leaves others unaffected.
  await initFastRepo(template, { packSize: 1 * MiB });
  const snapshots = new Map<string, Manifest>();
  for (let i = 0; i < 2; i++) {
    if (i > 0) await tree.mutate({ changes: 4, replaceBig: 1 });
    const r = await forgeRun(['backup', '-r', template, '--json', src]);
    expect(r.code, r.stderr).toBe(0);
    const id = jsonLines(r.stdout).find((l) => l.message_type === 'summary')!.snapshot_id as string;
    snapshots.set(id, new Map(tree.manifest));
  }
  const repo = await openFsRepo(template);
  const files = new Map<string, Map<string, string[]>>();
  const trees = new Map<string, Set<string>>();
  const packs: Fixture['packs'] = new Map();
  try {
    for (const name of await objectNames(template, 'index')) {
      for (const p of (await repo.loadIndexFile(name)).packs) packs.set(p.id, [...p.blobs]);
    }
    for (const snap of await repo.listSnapshots()) {
      const f = new Map<string, string[]>();
      const ts = new Set<string>([snap.tree]);
      for await (const { path, node } of walkSnapshot(repo, snap)) {
        if (node.subtree) ts.add(node.subtree);
        if (node.type === 'file' && path.startsWith(`${src}/`))
          f.set(path.slice(src.length + 1), [...(node.content ?? [])]);
      }
      files.set(snap.id, f);
      trees.set(snap.id, ts);
    }
  } finally {
    await repo.close();
  }
  fx = { base: t.path, template, src, snapshots, files, trees, packs };
  // Zero false positives: the undamaged repository checks clean, reading every byte.
  await expectCleanCheck(template, 'undamaged template', true);
}, 120_000);

afterAll(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function flipBit(path: string, from: number, to: number): Promise<{ offset: number; bit: number }> {
  const b = await readFile(path);
  const offset = rng.int(from, to);
  const bit = rng.int(0, 8);
  b[offset]! ^= 1 << bit;
  await writeFile(path, b);
  return { offset, bit };
}

/** The restored files are a subset of the expected ones, each byte-identical. */
function expectNoWrongBytes(got: Manifest, expected: Manifest, what: string): void {
  for (const [p, h] of got) expect(h, `${what}: ${p} restored with wrong bytes`).toBe(expected.get(p));
}

async function restoreAll(repo: string, what: string): Promise<void> {
  for (const [id, m] of fx.snapshots)
    await expectCliRestore(repo, id, fx.src, join(fx.base, 'restore'), m, what);
}

/** A key file's meaning: what opening it depends on (everything but created/hostname/username). */
function keySemantics(bytes: Buffer): string | undefined {
  try {
    const k = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    const kdf = (k.kdf ?? {}) as Record<string, unknown>;
    return JSON.stringify([
      k.version,
      kdf.algorithm,
      kdf.memoryKiB,
      kdf.iterations,
      kdf.parallelism,
      typeof kdf.salt === 'string' ? Buffer.from(kdf.salt, 'base64').toString('hex') : kdf.salt,
      typeof k.masterKey === 'string' ? Buffer.from(k.masterKey, 'base64').toString('hex') : k.masterKey,
    ]);
  } catch {
    return undefined;
  }
}

const neutralKeyFlips: string[] = [];

async function trial(type: ObjType, n: number): Promise<void> {
  const work = join(fx.base, `work-${type}-${n}`);
  await copyRepo(fx.template, work);
  const target = join(fx.base, 'restore');
  try {
    if (type === 'pack-data' || type === 'pack-header') {
      const pack = rng.pick([...fx.packs.keys()].sort());
      const path = packPath(work, pack);
      const bytes = await readFile(path);
      const headerLen = bytes.readUInt32LE(bytes.length - 4);
      const area = bytes.length - headerLen - 4;
      const { offset, bit } =
        type === 'pack-data' ? await flipBit(path, 0, area) : await flipBit(path, area, bytes.length);
      const what = `${type} trial ${n}: pack ${pack.slice(0, 12)} byte ${offset} bit ${bit} (seed ${seed})`;
      const c = await forgeCheck(work, true);
      expect(c.run.code, `${what}\n${c.run.stdout.slice(0, 3000)}`).toBe(1);
      expect(c.summary?.ok, what).toBe(false);
      expect(
        c.problems.some((p) => p.object === pack || p.message.includes(pack.slice(0, 12))),
        `${what}: a finding names the pack\n${JSON.stringify(c.problems).slice(0, 3000)}`,
      ).toBe(true);
      if (type === 'pack-data') {
        const blob = fx.packs.get(pack)!.find((b) => b.offset <= offset && offset < b.offset + b.length)!;
        expect(blob, what).toBeDefined();
        expect(
          c.problems.some((p) => p.object === blob.id && p.code === 'FORGE_INTEGRITY'),
          `${what}: the damaged ${blob.type} blob is named`,
        ).toBe(true);
        for (const [id, m] of fx.snapshots) {
          const r = await cliRestore(work, id, fx.src, target);
          const w = `${what}: restore ${id.slice(0, 8)}`;
          expectNoWrongBytes(r.manifest, m, w);
          if (blob.type === 'data') {
            const affected = [...fx.files.get(id)!].filter(([, c2]) => c2.includes(blob.id)).map(([p]) => p);
            const expected = new Map([...m].filter(([p]) => !affected.includes(p)));
            expect(sorted(r.manifest), `${w}: exactly the unaffected files`).toEqual(sorted(expected));
            expect(r.run.code, `${w}\n${r.run.stderr}`).toBe(affected.length > 0 ? 1 : 0);
            if (affected.length > 0) {
              const err = jsonLines(r.run.stdout).find((l) => l.message_type === 'error');
              expect(err?.code, w).toBe('FORGE_INTEGRITY');
            }
          } else if (fx.trees.get(id)!.has(blob.id)) {
            expect(r.run.code, `${w}: a damaged directory fails the restore`).toBe(1);
          } else {
            expect(r.run.code, w).toBe(0);
            expect(sorted(r.manifest), w).toEqual(sorted(m));
          }
        }
      } else {
        // The index still locates every blob: all files restore.
        await restoreAll(work, what);
      }
      return;
    }
    if (type === 'index' || type === 'snapshot') {
      const sub = type === 'index' ? 'index' : 'snapshots';
      const name = rng.pick(await objectNames(work, sub));
      const path = join(work, sub, name);
      const { offset, bit } = await flipBit(path, 0, (await readFile(path)).length);
      const what = `${type} trial ${n}: ${name.slice(0, 12)} byte ${offset} bit ${bit} (seed ${seed})`;
      const c = await forgeCheck(work, true);
      expect(c.run.code, what).toBe(1);
      const kind = type === 'index' ? 'index-unreadable' : 'snapshot-unreadable';
      expect(
        c.problems.some((p) => p.kind === kind && p.object === name),
        `${what}: named\n${JSON.stringify(c.problems.slice(0, 5))}`,
      ).toBe(true);
      if (type === 'index') {
        // The documented fix: rebuild the index from the pack headers; then everything restores.
        const r = await forgeRun(['repair', 'index', '-r', work]);
        expect(r.code, `${what}: repair index\n${r.stderr}`).toBe(0);
        await expectCleanCheck(work, `${what}: after repair index`, true);
        await restoreAll(work, `${what}: after repair index`);
      } else {
        // The damaged snapshot never restores wrong bytes.
        const r = await cliRestore(work, name, fx.src, target);
        expect(r.run.code, what).not.toBe(0);
        expectNoWrongBytes(r.manifest, fx.snapshots.get(name)!, what);
      }
      return;
    }
    if (type === 'config') {
      const path = join(work, 'config');
      const { offset, bit } = await flipBit(path, 0, (await readFile(path)).length);
      const what = `config trial ${n}: byte ${offset} bit ${bit} (seed ${seed})`;
      for (const args of [['snapshots'], ['check', '--read-data']]) {
        const r = await forgeRun([...args, '-r', work, '--json']);
        expect(r.code, `${what}: ${args[0]}\n${r.stderr}`).not.toBe(0);
        const err = jsonLines(r.stdout).find((l) => l.message_type === 'error');
        expect(['FORGE_REPO_INVALID', 'FORGE_REPO_VERSION', 'FORGE_INTEGRITY'], what).toContain(err?.code);
        if (err?.code === 'FORGE_INTEGRITY') expect(String(err.message), what).toMatch(/config/);
      }
      return;
    }
    // key, key-of-two
    let secondKey = '';
    if (type === 'key-of-two') {
      const repo = await openFsRepo(work);
      secondKey = await repo.addKey(PASSWORD2, { kdf: FAST_KDF });
      await repo.close();
    }
    const keys = await objectNames(work, 'keys');
    const name = rng.pick(keys);
    const path = join(work, 'keys', name);
    const original = await readFile(path);
    const { offset, bit } = await flipBit(path, 0, original.length);
    const damaged = await readFile(path);
    const what = `${type} trial ${n}: key ${name.slice(0, 12)} byte ${offset} bit ${bit} ${JSON.stringify(original.subarray(Math.max(0, offset - 8), offset + 8).toString())} (seed ${seed})`;
    // Which password the damaged key file was made for.
    const damagedPw = name === secondKey ? PASSWORD2 : PASSWORD;
    if (type === 'key-of-two') {
      const otherPw = damagedPw === PASSWORD2 ? PASSWORD : PASSWORD2;
      const ok = await forgeRun(['snapshots', '-r', work, '--json'], { FORGE_PASSWORD: otherPw });
      expect(ok.code, `${what}: the undamaged key still opens\n${ok.stderr}`).toBe(0);
    }
    // Every flip is caught, also in unauthenticated fields (created, hostname, …): a key file's
    // name is the SHA-256 of its bytes and opening checks it.
    if (keySemantics(damaged) === keySemantics(original)) neutralKeyFlips.push(what);
    const r = await forgeRun(['snapshots', '-r', work, '--json'], { FORGE_PASSWORD: damagedPw });
    expect(r.code, `${what}: opening with the damaged key fails\n${r.stdout}`).toBe(12);
    const err = jsonLines(r.stdout).find((l) => l.message_type === 'error');
    expect(['FORGE_WRONG_PASSWORD', 'FORGE_KEY_INVALID'], what).toContain(err?.code);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

describe('bit-rot detection (reliability scenario 4)', () => {
  const types: ObjType[] = ['pack-data', 'pack-header', 'index', 'snapshot', 'key', 'key-of-two', 'config'];
  for (const type of types) {
    it(
      `detects one flipped bit in ${type} (${TRIALS} trials), restores never write wrong bytes`,
      async () => {
        for (let n = 0; n < TRIALS; n++) await trial(type, n);
      },
      60_000 + TRIALS * 15_000,
    );
  }

  it('the undamaged repository still checks clean afterwards (no false positives)', async () => {
    await expectCleanCheck(fx.template, 'undamaged template at the end', true);
    await restoreAll(fx.template, 'undamaged template');
    if (neutralKeyFlips.length > 0)
      console.log(
        `[bit-rot] seed ${seed}: ${neutralKeyFlips.length} key flips touched only unauthenticated fields (caught by the name check)`,
      );
  });

  it('refuses a key file with one flipped bit in its unauthenticated metadata', async () => {
    const work = join(fx.base, 'work-key-metadata');
    await copyRepo(fx.template, work);
    const [name] = await objectNames(work, 'keys');
    const path = join(work, 'keys', name!);
    const text = (await readFile(path)).toString('utf8');
    const at = text.indexOf('"created": "') + '"created": "'.length + 3; // last digit of the year
    const b = Buffer.from(text);
    b[at]! ^= 1;
    await writeFile(path, b);
    const r = await forgeRun(['snapshots', '-r', work, '--json']);
    expect(r.code, 'a damaged key file must not open silently').not.toBe(0);
  });

  it('one bit-rotted snapshot does not stop restoring the other snapshot', async () => {
    const work = join(fx.base, 'work-snapshot-other');
    await copyRepo(fx.template, work);
    const [damaged, other] = [...fx.snapshots.keys()];
    const path = join(work, 'snapshots', damaged!);
    const b = await readFile(path);
    b[Math.floor(b.length / 2)]! ^= 0x10;
    await writeFile(path, b);
    await expectCliRestore(
      work,
      other!,
      fx.src,
      join(fx.base, 'restore'),
      fx.snapshots.get(other!)!,
      'other',
    );
  });
});
