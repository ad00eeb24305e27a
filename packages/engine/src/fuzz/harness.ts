// Shared helpers for the parser fuzz tests (reliability scenario 5).
//
// Every property is bounded by a run count AND a time budget, and logs its seed so a failure
// replays:
//
//   FORGE_FUZZ_SEED=123456 pnpm --filter @backupforge/engine exec vitest run src/fuzz
//
// Long runs: FORGE_FUZZ_SECONDS=<n> gives every property n seconds and lifts the run count cap
// (the normal suite keeps the whole folder well under a minute).
import { ForgeError, type ForgeErrorCode } from '@backupforge/common';
import fc from 'fast-check';

const envSeconds = Number(process.env.FORGE_FUZZ_SECONDS ?? '');
/** Seconds per property for long runs; 0 in the normal suite. */
export const FUZZ_SECONDS = Number.isFinite(envSeconds) && envSeconds > 0 ? envSeconds : 0;

const envSeed = process.env.FORGE_FUZZ_SEED;
/** One seed for the whole run (all properties), printed by every property. */
export const FUZZ_SEED =
  envSeed !== undefined && envSeed !== '' && Number.isInteger(Number(envSeed))
    ? Number(envSeed) | 0
    : (Math.floor(Math.random() * 0x7fffffff) ^ Date.now()) | 0;

const MiB = 1024 * 1024;
/** Coarse RSS growth bound per property: catches allocation bombs, not leaks of a few MiB. */
export const RSS_GROWTH_LIMIT = 512 * MiB;

export interface FuzzBudget {
  /** Run cap in the normal suite. */
  readonly numRuns: number;
  /** Time cap in the normal suite (ms). */
  readonly ms: number;
  /** Per-run timeout for async properties (ms); a hang fails the property. */
  readonly runTimeoutMs?: number;
}

/** Peak RSS of this process so far (bytes): catches allocations that are freed again. */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

export interface FuzzStats {
  readonly name: string;
  /** Growth of the process's peak RSS during the property (0 when an earlier peak was higher). */
  readonly peakGrowth: number;
  readonly runs: number;
  readonly ms: number;
  readonly seed: number;
  readonly interrupted: boolean;
  readonly rssGrowth: number;
}

/** The vitest timeout for a test running properties with these budgets. */
export function testTimeout(...budgets: FuzzBudget[]): number {
  const perProperty = (b: FuzzBudget) => (FUZZ_SECONDS > 0 ? FUZZ_SECONDS * 1000 : b.ms);
  return budgets.reduce((t, b) => t + perProperty(b) + 10_000, 20_000);
}

function parameters<T>(budget: FuzzBudget, seed: number): fc.Parameters<T> {
  const long = FUZZ_SECONDS > 0;
  return {
    seed,
    numRuns: long ? 1_000_000_000 : budget.numRuns,
    interruptAfterTimeLimit: long ? FUZZ_SECONDS * 1000 : budget.ms,
    markInterruptAsFailure: false,
    ...(budget.runTimeoutMs !== undefined ? { timeout: budget.runTimeoutMs } : {}),
  };
}

function finish(
  name: string,
  details: fc.RunDetails<unknown>,
  t0: number,
  rss0: number,
  peak0: number,
): FuzzStats {
  const ms = Math.round(performance.now() - t0);
  const rssGrowth = process.memoryUsage().rss - rss0;
  const peakGrowth = peakRss() - peak0;
  const stats: FuzzStats = {
    name,
    peakGrowth,
    runs: details.numRuns,
    ms,
    seed: details.seed,
    interrupted: details.interrupted,
    rssGrowth,
  };
  console.log(
    `[fuzz] ${name}: ${stats.runs} runs in ${ms} ms${stats.interrupted ? ' (time limit)' : ''}, ` +
      `seed=${stats.seed}, rss ${rssGrowth >= 0 ? '+' : ''}${(rssGrowth / MiB).toFixed(1)} MiB, ` +
      `peak rss +${(peakGrowth / MiB).toFixed(1)} MiB`,
  );
  if (details.failed) {
    throw new Error(
      `[fuzz] ${name} failed (replay with FORGE_FUZZ_SEED=${details.seed}):\n${fc.defaultReportMessage(details)}` +
        `\nError: ${details.errorInstance instanceof Error ? (details.errorInstance.stack ?? details.errorInstance.message) : String(details.errorInstance)}`,
      { cause: details.errorInstance },
    );
  }
  if (rssGrowth > RSS_GROWTH_LIMIT || peakGrowth > RSS_GROWTH_LIMIT) {
    throw new Error(
      `[fuzz] ${name}: RSS grew by ${(rssGrowth / MiB).toFixed(0)} MiB, peak by ${(peakGrowth / MiB).toFixed(0)} MiB (allocation bomb?)`,
    );
  }
  if (stats.runs === 0) throw new Error(`[fuzz] ${name}: no run completed`);
  return stats;
}

/** Runs a synchronous property under the budget; throws a replayable report on failure. */
export function fuzz<Ts>(
  name: string,
  property: fc.IProperty<Ts>,
  budget: FuzzBudget,
  seed = FUZZ_SEED,
): FuzzStats {
  const rss0 = process.memoryUsage().rss;
  const peak0 = peakRss();
  const t0 = performance.now();
  const details = fc.check(property, parameters<Ts>(budget, seed)) as fc.RunDetails<unknown>;
  return finish(name, details, t0, rss0, peak0);
}

/** Runs an asynchronous property under the budget; throws a replayable report on failure. */
export async function fuzzAsync<Ts>(
  name: string,
  property: fc.IAsyncProperty<Ts>,
  budget: FuzzBudget,
  seed = FUZZ_SEED,
): Promise<FuzzStats> {
  const rss0 = process.memoryUsage().rss;
  const peak0 = peakRss();
  const t0 = performance.now();
  const details = (await fc.check(property, parameters<Ts>(budget, seed))) as fc.RunDetails<unknown>;
  return finish(name, details, t0, rss0, peak0);
}

/** Longest single call a parser may take on a few KiB of input before it counts as a hang. */
export const SLOW_CALL_MS = 2000;

function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name}: ${e.message}\n${e.stack ?? ''}`;
  return String(e);
}

function checkError(e: unknown, codes: readonly ForgeErrorCode[], what: string): void {
  if (!(e instanceof ForgeError)) {
    throw new Error(`${what} threw a non-ForgeError: ${describeError(e)}`, { cause: e });
  }
  if (!codes.includes(e.code)) {
    throw new Error(`${what} threw ${e.code} (expected one of ${codes.join(', ')}): ${e.message}`, {
      cause: e,
    });
  }
}

export type Outcome<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: ForgeError };

/**
 * Calls `fn`: a result, or a ForgeError whose code is in `codes`, is fine; anything else (a
 * TypeError, RangeError, SyntaxError, an unexpected code, a call slower than SLOW_CALL_MS)
 * fails the property.
 */
export function outcome<T>(fn: () => T, codes: readonly ForgeErrorCode[], what = 'parser'): Outcome<T> {
  const t0 = performance.now();
  let result: Outcome<T>;
  try {
    result = { ok: true, value: fn() };
  } catch (e) {
    checkError(e, codes, what);
    result = { ok: false, error: e as ForgeError };
  }
  const ms = performance.now() - t0;
  if (ms > SLOW_CALL_MS) throw new Error(`${what} took ${Math.round(ms)} ms on one input (hang?)`);
  return result;
}

/** Async {@link outcome} (the per-run timeout of the property catches hangs). */
export async function outcomeAsync<T>(
  fn: () => Promise<T>,
  codes: readonly ForgeErrorCode[],
  what = 'parser',
): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    checkError(e, codes, what);
    return { ok: false, error: e as ForgeError };
  }
}

// ---------------------------------------------------------------------------------------------
// Mutations of valid inputs.

/** Values that tend to break length and count fields. */
const INTERESTING_U32 = [
  0, 1, 2, 27, 28, 32, 33, 44, 0x7f, 0x80, 0xff, 0xffff, 0x10000, 0x7fffffff, 0xffffffff,
];

export type Mutation =
  | { readonly kind: 'flip'; readonly at: number; readonly bit: number }
  | { readonly kind: 'set'; readonly at: number; readonly value: number }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'extend'; readonly bytes: Uint8Array }
  | { readonly kind: 'delete'; readonly at: number; readonly count: number }
  | { readonly kind: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly kind: 'u32'; readonly at: number; readonly value: number; readonly fromEnd: boolean }
  | { readonly kind: 'duplicate'; readonly at: number; readonly count: number; readonly to: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('set' as const),
      at: fc.nat(),
      value: fc.oneof(fc.constantFrom(0, 0xff, 0x7f, 0x80, 0x22, 0x5c, 0x7b, 0x7d), fc.nat(255)),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('delete' as const),
      at: fc.nat(),
      count: fc.integer({ min: 1, max: 64 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('u32' as const),
      at: fc.nat(),
      value: fc.oneof(fc.constantFrom(...INTERESTING_U32), fc.nat({ max: 0xffffffff })),
      fromEnd: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('duplicate' as const),
      at: fc.nat(),
      count: fc.integer({ min: 1, max: 128 }),
      to: fc.nat(),
    }),
  },
);

/** Applies `mutations` in order to a copy of `input`. */
export function mutate(input: Uint8Array, mutations: readonly Mutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const len = b.length;
    switch (m.kind) {
      case 'flip':
        if (len > 0) b[m.at % len] = (b[m.at % len] ?? 0) ^ (1 << m.bit);
        break;
      case 'set':
        if (len > 0) b[m.at % len] = m.value;
        break;
      case 'truncate':
        b = b.subarray(0, m.at % (len + 1));
        break;
      case 'extend':
        b = Buffer.concat([b, m.bytes]);
        break;
      case 'delete': {
        const at = m.at % (len + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
        break;
      }
      case 'insert': {
        const at = m.at % (len + 1);
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
      }
      case 'u32':
        if (len >= 4) {
          const at = m.fromEnd ? len - 4 - (m.at % (len - 3)) : m.at % (len - 3);
          b = Buffer.from(b);
          b.writeUInt32LE(m.value >>> 0, at);
        }
        break;
      case 'duplicate': {
        if (len === 0) break;
        const at = m.at % len;
        const piece = b.subarray(at, at + m.count);
        const to = m.to % (len + 1);
        b = Buffer.concat([b.subarray(0, to), piece, b.subarray(to)]);
        break;
      }
    }
  }
  return Buffer.from(b);
}

/** 1–4 mutations. */
export const mutationsArb: fc.Arbitrary<Mutation[]> = fc.array(mutationArb, { minLength: 1, maxLength: 4 });

/** Random bytes up to a few KiB (mostly short, sometimes longer). */
export const randomBytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 3, arbitrary: fc.uint8Array({ maxLength: 256 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096 }) },
);

// ---------------------------------------------------------------------------------------------
// Evil JSON.

export interface EvilJsonOptions {
  /**
   * Include objects whose `toString`/`valueOf` are not functions (`{"toString":1}`): JSON can
   * carry them, and `String(x)`, template literals and `RegExp#test(x)` throw a TypeError on
   * them. Off in the green properties while the known bugs they trigger are open (see the
   * `known bugs` tests), on in those tests. Also adds {@link DEEP_ARRAY}.
   */
  readonly toPrimitiveGadgets?: boolean;
}

const HEX = '0123456789abcdef';
export const hex64Arb: fc.Arbitrary<string> = fc
  .array(fc.constantFrom(...HEX.split('')), { minLength: 64, maxLength: 64 })
  .map((a) => a.join(''));

/** Strings that matter to parsers: unsafe names, keys with meaning to JS, numbers as text. */
export const evilStringArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    '.',
    '..',
    '/',
    'a/b',
    '../../etc/passwd',
    '\0',
    'a\0b',
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'valueOf',
    'hasOwnProperty',
    'NaN',
    '-0',
    '1e309',
    '9007199254740993',
    '\uD800',
    '\uFFFF',
    'é',
    'e\u0301',
    'x'.repeat(300),
  ),
  hex64Arb,
  fc.string({ maxLength: 16 }),
  fc.string({ unit: 'binary', maxLength: 16 }),
);

export const evilNumberArb: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(
    0,
    -0,
    -1,
    1.5,
    0x7fffffff,
    0x80000000,
    0xffffffff,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    Number.MAX_SAFE_INTEGER,
    -Number.MAX_SAFE_INTEGER,
    Number.MAX_VALUE,
    1e300,
    Number.MIN_VALUE,
  ),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);

/**
 * 20 000 nested arrays: JSON.parse takes it, but JSON.stringify, String() and RegExp#test on it
 * overflow the stack (RangeError).
 */
export const DEEP_ARRAY: unknown = JSON.parse(`${'['.repeat(20_000)}${']'.repeat(20_000)}`);

/** Keys that turn an object into a to-primitive gadget (see EvilJsonOptions). */
const GADGET_KEYS = new Set(['toString', 'valueOf']);
/** Object keys for the green properties: evil strings, minus the gadget keys. */
export const evilKeyArb: fc.Arbitrary<string> = evilStringArb.filter((k) => !GADGET_KEYS.has(k));

/** A JSON value built from evil leaves. */
export function evilJsonArb(opts: EvilJsonOptions = {}): fc.Arbitrary<unknown> {
  const gadget = fc.constantFrom<unknown>(
    { toString: 1 },
    { toString: null, valueOf: null },
    { valueOf: {}, toString: {} },
    [{ toString: 1 }],
    DEEP_ARRAY,
  );
  const leaf: fc.Arbitrary<unknown> = fc.oneof(
    fc.constant(null),
    fc.boolean(),
    evilNumberArb,
    evilStringArb,
    ...(opts.toPrimitiveGadgets ? [gadget] : []),
  );
  return fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      leaf,
      fc.array(tie('value'), { maxLength: 4 }),
      // Null-prototype objects (which JSON.parse never makes) have no toString either: gadgets only.
      fc.dictionary(opts.toPrimitiveGadgets ? evilStringArb : evilKeyArb, tie('value'), {
        maxKeys: 4,
        noNullPrototype: !opts.toPrimitiveGadgets,
      }),
    ),
  })).value;
}

/** JSON text nesting `[` (or `{"a":`) `depth` levels deep. */
export function deeplyNested(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array'
    ? `${'['.repeat(depth)}${']'.repeat(depth)}`
    : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

const DEEP_SENTINEL = '\u0000deep-array\u0000';

/**
 * Serialises a value as JSON text; {@link DEEP_ARRAY} (which JSON.stringify cannot print) is
 * written out as text.
 */
export function jsonBytes(value: unknown): Buffer {
  const text = JSON.stringify(value, (_k, v: unknown) => (v === DEEP_ARRAY ? DEEP_SENTINEL : v)) ?? 'null';
  return Buffer.from(text.split(JSON.stringify(DEEP_SENTINEL)).join(deeplyNested(20_000, 'array')), 'utf8');
}

/** `value` with some fields replaced by evil values (structurally close to valid). */
export function corrupted(value: unknown, evil: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  if (Array.isArray(value)) {
    return fc
      .tuple(
        fc.tuple(...value.map((v) => corrupted(v, evil))),
        fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: evil }),
      )
      .map(([items, extra]) => (extra === undefined ? items : [...items, extra]));
  }
  const leafOrEvil = (v: unknown) =>
    fc.oneof(
      { weight: 5, arbitrary: fc.constant(v) },
      { weight: 1, arbitrary: evil },
      { weight: 1, arbitrary: fc.constant(undefined) },
    );
  if (value && typeof value === 'object') {
    const entries = Object.entries(value);
    return fc
      .tuple(
        ...entries.map(([, v]) =>
          v && typeof v === 'object'
            ? fc.oneof({ weight: 5, arbitrary: corrupted(v, evil) }, { weight: 1, arbitrary: evil })
            : leafOrEvil(v),
        ),
        fc.option(fc.tuple(evilKeyArb, evil), { nil: undefined, freq: 4 }),
      )
      .map((vals) => {
        const out: Record<string, unknown> = {};
        entries.forEach(([k], i) => {
          if (vals[i] !== undefined)
            Object.defineProperty(out, k, {
              value: vals[i],
              enumerable: true,
              writable: true,
              configurable: true,
            });
        });
        const extra = vals[entries.length] as [string, unknown] | undefined;
        if (extra)
          Object.defineProperty(out, extra[0], {
            value: extra[1],
            enumerable: true,
            writable: true,
            configurable: true,
          });
        return out;
      });
  }
  return leafOrEvil(value);
}

export const evilLeaf: fc.Arbitrary<unknown> = fc.oneof(
  evilStringArb,
  evilNumberArb,
  hex64Arb,
  fc.constant(null),
  evilJsonArb(),
);
