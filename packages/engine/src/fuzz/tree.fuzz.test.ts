// Fuzzes tree blobs (§9): decodeTree on random bytes, mutated trees and evil JSON.
import type { ForgeErrorCode } from '@backupforge/common';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeTree, encodeTree, metadataFromNode, type Tree, type TreeNode } from '../format/tree.ts';
import {
  deeplyNested,
  evilJsonArb,
  evilNumberArb,
  evilStringArb,
  type FuzzBudget,
  fuzz,
  hex64Arb,
  jsonBytes,
  mutate,
  mutationsArb,
  outcome,
  randomBytesArb,
  testTimeout,
} from './harness.ts';

const CODES: readonly ForgeErrorCode[] = ['FORGE_FORMAT'];
const BUDGET: FuzzBudget = { numRuns: 2000, ms: 1500 };
const ID = '34'.repeat(32);

const base = {
  mode: 0o644,
  uid: 1000,
  gid: 1000,
  mtime: '1700000000123456789',
  atime: '1700000000000000000',
  ctime: '1700000000123456789',
  inode: '1234',
  device: '42',
  links: 1,
};

const SAMPLE: Tree = {
  nodes: [
    { name: '.hidden', type: 'file', size: 5, content: ['aa'.repeat(32)], ...base },
    { name: 'dir', type: 'dir', subtree: 'bb'.repeat(32), ...base, mode: 0o755 },
    { name: 'empty', type: 'file', size: 0, content: [], ...base },
    { name: 'link', type: 'symlink', linkTarget: '../elsewhere', ...base },
    { name: 'tty', type: 'chardev', rdev: 1025, ...base },
    { name: 'é', type: 'fifo', user: 'alice', group: 'staff', ...base },
  ] as TreeNode[],
};

/** Independent check of what decodeTree promises about a tree it returns (§9). */
function expectValidTree(t: Tree): void {
  expect(Array.isArray(t.nodes)).toBe(true);
  let prev: Buffer | undefined;
  for (const n of t.nodes) {
    expect(typeof n.name).toBe('string');
    expect(['', '.', '..']).not.toContain(n.name);
    expect(n.name.includes('/') || n.name.includes('\0')).toBe(false);
    const bytes = Buffer.from(n.name, 'utf8');
    if (prev) expect(Buffer.compare(prev, bytes)).toBeLessThan(0);
    prev = bytes;
    expect(['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev']).toContain(n.type);
    if (n.type === 'file') expect(n.content?.every((c) => /^[0-9a-f]{64}$/.test(c))).toBe(true);
    if (n.type === 'dir') expect(n.subtree).toMatch(/^[0-9a-f]{64}$/);
    // What restore does with a node must not throw either.
    metadataFromNode(n);
  }
}

const nodeArb: fc.Arbitrary<Record<string, unknown>> = fc
  .record(
    {
      name: fc.oneof({ weight: 3, arbitrary: evilStringArb }, { weight: 1, arbitrary: evilJsonArb() }),
      type: fc.oneof(
        {
          weight: 6,
          arbitrary: fc.constantFrom('file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev'),
        },
        { weight: 1, arbitrary: evilJsonArb() },
      ),
      mode: fc.oneof(fc.constant(0o644), evilNumberArb, evilJsonArb()),
      uid: fc.oneof(fc.constant(0), evilNumberArb),
      gid: fc.oneof(fc.constant(0), evilNumberArb),
      mtime: fc.oneof(fc.constant('1'), evilStringArb, fc.bigInt().map(String), evilNumberArb),
      atime: fc.oneof(fc.constant('1'), fc.bigInt().map(String)),
      ctime: fc.oneof(fc.constant('1'), fc.constantFrom('-0', '007', '1'.repeat(400))),
      inode: fc.oneof(fc.constant('1'), evilStringArb),
      device: fc.constant('1'),
      links: fc.oneof(fc.constant(1), evilNumberArb),
      size: fc.oneof(fc.nat(), evilNumberArb, evilStringArb),
      content: fc.oneof(
        fc.array(hex64Arb, { maxLength: 3 }),
        fc.array(evilStringArb, { maxLength: 3 }),
        evilJsonArb(),
      ),
      subtree: fc.oneof(hex64Arb, evilStringArb, evilJsonArb()),
      linkTarget: fc.oneof(evilStringArb, evilJsonArb()),
      rdev: evilNumberArb,
      user: fc.oneof(evilStringArb, evilJsonArb()),
    },
    { requiredKeys: ['name', 'type'] },
  )
  .map((n) => n as Record<string, unknown>);

/** Evil trees: nodes from evil fields, sometimes sorted by name (so more reach the later checks). */
const evilTreeArb = fc
  .tuple(fc.array(nodeArb, { maxLength: 6 }), fc.boolean(), fc.boolean())
  .map(([nodes, sort, dup]) => {
    const out = nodes.slice();
    if (sort) {
      out.sort((a, b) =>
        typeof a.name === 'string' && typeof b.name === 'string'
          ? Buffer.compare(Buffer.from(a.name, 'utf8'), Buffer.from(b.name, 'utf8'))
          : 0,
      );
    }
    if (dup && out.length > 0) out.push({ ...out[out.length - 1] });
    return { nodes: out };
  });

describe('fuzz: decodeTree', () => {
  it('no false positives: encoded trees decode to themselves', () => {
    const bytes = encodeTree(SAMPLE);
    expect(decodeTree(bytes, ID)).toEqual(SAMPLE);
    expectValidTree(decodeTree(bytes, ID));
    expect(decodeTree(encodeTree({ nodes: [] }), ID)).toEqual({ nodes: [] });
    // A view into a larger buffer (as blobs come out of a pack) decodes the same.
    const padded = Buffer.concat([Buffer.from('xx'), bytes, Buffer.from('yy')]);
    expect(decodeTree(padded.subarray(2, 2 + bytes.length), ID)).toEqual(SAMPLE);
  });

  it('rejects unsafe, duplicate and unsorted names', () => {
    const node = SAMPLE.nodes[2]!;
    for (const name of ['', '.', '..', '/', 'a/b', '\0', 'a\0']) {
      expect(() => decodeTree(encodeTree({ nodes: [{ ...node, name }] }), ID)).toThrow(/unsafe/);
    }
    expect(() => decodeTree(encodeTree({ nodes: [node, node] }), ID)).toThrow(/duplicate/);
    expect(() =>
      decodeTree(
        encodeTree({
          nodes: [
            { ...node, name: 'b' },
            { ...node, name: 'a' },
          ],
        }),
        ID,
      ),
    ).toThrow(/not sorted/);
    // Names that differ as JS strings but not as UTF-8 bytes (lone surrogates) are duplicates.
    expect(() =>
      decodeTree(
        encodeTree({
          nodes: [
            { ...node, name: 'x\uD800' },
            { ...node, name: 'x\uDBFF' },
          ],
        }),
        ID,
      ),
    ).toThrow(/duplicate/);
  });

  it(
    'random bytes',
    () => {
      fuzz(
        'decodeTree/random',
        fc.property(randomBytesArb, (bytes) => {
          const r = outcome(() => decodeTree(bytes, ID), CODES, 'decodeTree');
          if (r.ok) expectValidTree(r.value);
        }),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  it(
    'mutated valid tree',
    () => {
      const bytes = encodeTree(SAMPLE);
      fuzz(
        'decodeTree/mutated',
        fc.property(mutationsArb, (ms) => {
          const r = outcome(() => decodeTree(mutate(bytes, ms), ID), CODES, 'decodeTree');
          if (r.ok) expectValidTree(r.value);
        }),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  it(
    'evil JSON: unsafe and duplicate names, wrong types, huge numbers, __proto__ keys',
    () => {
      fuzz(
        'decodeTree/evil',
        fc.property(
          fc.oneof(
            { weight: 4, arbitrary: evilTreeArb.map(jsonBytes) },
            { weight: 1, arbitrary: evilJsonArb().map(jsonBytes) },
            {
              weight: 1,
              arbitrary: fc.constantFrom(
                Buffer.from(deeplyNested(100_000, 'array')),
                Buffer.from(`{"nodes":${deeplyNested(100_000, 'array')}}`),
                Buffer.from('{"nodes":[{"__proto__":{"name":"x"},"type":"fifo"}]}'),
                Buffer.from('{"__proto__":{"nodes":[]}}'),
                Buffer.from('{"nodes":[], "nodes": 1}'),
                Buffer.from('{"nodes":{"length":1,"0":{}}}'),
                Buffer.from('null'),
                Buffer.from('"nodes"'),
              ),
            },
          ),
          (bytes) => {
            const r = outcome(() => decodeTree(bytes, ID), CODES, 'decodeTree');
            if (r.ok) expectValidTree(r.value);
          },
        ),
        BUDGET,
      );
    },
    testTimeout(BUDGET),
  );

  // FIXED (was a bug found by this fuzzer) (known, open): decodeTree builds its error messages with JSON.stringify of the
  // offending value (src/format/tree.ts:113 `JSON.stringify(n?.name)`, :118
  // `JSON.stringify(n.type)`). JSON.parse accepts nesting far deeper than JSON.stringify can
  // print, so a tree blob like `{"nodes":[{"name":[[[…20 000 deep…]]]}]}` makes decodeTree throw
  // RangeError "Maximum call stack size exceeded" instead of FORGE_FORMAT. Tree blobs are sealed
  // (needs a key holder or a buggy writer), but restore/ls/check then die with a stack trace.
  // Fix: describe the bad value without serialising it whole, e.g.
  // `typeof v === 'string' ? JSON.stringify(v.slice(0, 100)) : typeof v`.
  it('regression: a deeply nested name makes decodeTree overflow the stack', () => {
    const bytes = Buffer.from(`{"nodes":[{"name":${deeplyNested(20_000, 'array')}}]}`);
    outcome(() => decodeTree(bytes, ID), CODES, 'decodeTree');
  });

  it('regression: a deeply nested type makes decodeTree overflow the stack', () => {
    const bytes = Buffer.from(`{"nodes":[{"name":"a","type":${deeplyNested(20_000, 'array')}}]}`);
    outcome(() => decodeTree(bytes, ID), CODES, 'decodeTree');
  });
});
