import type {
  BackendProperties,
  ByteRange,
  ForgeErrorCode,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
} from '@backupforge/common';
import { ForgeError, ForgeErrorCodes, objectKey } from '@backupforge/common';

/** When and how one method fails. Counted faults come first, then the probability applies. */
export interface FaultSpec {
  /** Fail the first `failTimes` matching calls. */
  readonly failTimes?: number;
  /** Then fail each matching call with this probability, in [0, 1], drawn from the seeded generator. */
  readonly failProbability?: number;
  /** Code of the injected `ForgeError`. Default `FORGE_IO`. */
  readonly code?: ForgeErrorCode;
  /** Default: `true` for `FORGE_IO`, `false` for any other code. */
  readonly retryable?: boolean;
  /**
   * Call the inner backend first and fail afterwards: the effect happened, the caller sees an
   * error (a lost acknowledgement). For `list`, a failing listing always yields a random prefix
   * of the entries before it throws, whatever this says.
   */
  readonly failAfter?: boolean;
  /** Only calls on these object types are affected. Default: every type. Ignored by `create`. */
  readonly types?: readonly ObjectType[];
  /**
   * Latency: every matching call waits this many milliseconds (through `FaultyBackendFaults.sleep`)
   * before it fails or reaches the inner backend; a `list` waits before its first entry. Whether
   * the call fails is still decided when it is made, so seeded runs stay deterministic. Draws
   * nothing from the generator and records nothing in `injected`. Default 0.
   */
  readonly delayMs?: number;
}

export interface LoadFaultSpec extends FaultSpec {
  /** Flip one bit of the returned bytes for the first `corruptTimes` matching loads. */
  readonly corruptTimes?: number;
  /** Then flip one bit of each matching load's bytes with this probability. */
  readonly corruptProbability?: number;
}

export interface SaveFaultSpec extends FaultSpec {
  /** Silently store a strict prefix of the data for the first `truncateTimes` matching saves. */
  readonly truncateTimes?: number;
  /** Then truncate each matching save with this probability. */
  readonly truncateProbability?: number;
}

export interface FaultyBackendFaults {
  /** Seed of the generator behind every probability, bit position and cut point. Default 1. */
  readonly seed?: number;
  /** How `delayMs` waits. Default: a real timer. Inject a fake clock's sleep for deterministic tests. */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly create?: FaultSpec;
  readonly save?: SaveFaultSpec;
  readonly load?: LoadFaultSpec;
  readonly stat?: FaultSpec;
  readonly list?: FaultSpec;
  readonly remove?: FaultSpec;
}

export type FaultMethod = 'create' | 'save' | 'load' | 'stat' | 'list' | 'remove';

export interface InjectedFault {
  readonly method: FaultMethod;
  readonly kind: 'fail' | 'corrupt' | 'truncate';
  /** The object key (`objectKey`), the listed type, or `''` for `create`. */
  readonly key: string;
  /** The flipped bit for `corrupt`, the stored length for `truncate`, the entries yielded for a failed `list`. */
  readonly at?: number;
}

/** A `StorageBackend` that injects faults, and records each one it injected. */
export interface FaultyBackend extends StorageBackend {
  readonly injected: readonly InjectedFault[];
}

/**
 * Wraps a backend and injects failures, corrupted loads and truncated saves, per method, either
 * for the first N calls or with a probability drawn from a seeded generator: the same seed and
 * the same sequence of calls inject the same faults. Injected errors are `ForgeError`s
 * (`FORGE_IO`, retryable, unless a `code` is given).
 *
 * ```ts
 * const backend = createFaultyBackend(createMemoryBackend(), {
 *   seed: 42,
 *   save: { failTimes: 1 },            // the first save fails
 *   load: { corruptProbability: 0.1 }, // one load in ten returns a flipped bit
 *   stat: { delayMs: 20 },             // every stat takes 20 ms longer
 * });
 * ```
 */
export function createFaultyBackend(inner: StorageBackend, faults: FaultyBackendFaults): FaultyBackend {
  return new FaultyStorageBackend(inner, faults);
}

class FaultyStorageBackend implements FaultyBackend {
  readonly #inner: StorageBackend;
  readonly #faults: FaultyBackendFaults;
  readonly #random: () => number;
  readonly #used = new Map<string, number>();
  readonly #injected: InjectedFault[] = [];

  constructor(inner: StorageBackend, faults: FaultyBackendFaults) {
    this.#inner = inner;
    this.#faults = Object.freeze({ ...faults });
    this.#random = mulberry32(faults.seed ?? 1);
  }

  get location(): string {
    return this.#inner.location;
  }

  get injected(): readonly InjectedFault[] {
    return this.#injected;
  }

  properties(): BackendProperties {
    return this.#inner.properties();
  }

  async create(): Promise<void> {
    await this.#withFailure('create', undefined, '', () => this.#inner.create());
  }

  async save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    const key = objectKey(handle);
    const spec = this.#faults.save;
    await this.#withFailure('save', handle.type, key, async () => {
      if (
        data.length > 0 &&
        this.#roll('save:truncate', spec?.truncateTimes, spec?.truncateProbability, handle.type, spec)
      ) {
        const length = Math.floor(this.#random() * data.length);
        this.#injected.push({ method: 'save', kind: 'truncate', key, at: length });
        data = data.slice(0, length);
      }
      await this.#inner.save(handle, data);
    });
  }

  async load(handle: ObjectHandle, range?: ByteRange): Promise<Uint8Array> {
    const key = objectKey(handle);
    const spec = this.#faults.load;
    return this.#withFailure('load', handle.type, key, async () => {
      const data = await this.#inner.load(handle, range);
      if (
        data.length > 0 &&
        this.#roll('load:corrupt', spec?.corruptTimes, spec?.corruptProbability, handle.type, spec)
      ) {
        const bit = Math.floor(this.#random() * data.length * 8);
        this.#injected.push({ method: 'load', kind: 'corrupt', key, at: bit });
        data[bit >>> 3]! ^= 1 << (bit & 7);
      }
      return data;
    });
  }

  async stat(handle: ObjectHandle): Promise<ObjectInfo> {
    return this.#withFailure('stat', handle.type, objectKey(handle), () => this.#inner.stat(handle));
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    const spec = this.#faults.list;
    const fail = this.#roll('list', spec?.failTimes, spec?.failProbability, type, spec);
    await this.#delay(type, spec);
    if (!fail) {
      yield* this.#inner.list(type);
      return;
    }
    const entries: ObjectInfo[] = [];
    for await (const info of this.#inner.list(type)) entries.push(info);
    const cut = Math.floor(this.#random() * (entries.length + 1));
    this.#injected.push({ method: 'list', kind: 'fail', key: type, at: cut });
    yield* entries.slice(0, cut);
    throw injectedError(spec, `list ${type}`);
  }

  async remove(handle: ObjectHandle): Promise<void> {
    await this.#withFailure('remove', handle.type, objectKey(handle), () => this.#inner.remove(handle));
  }

  async close(): Promise<void> {
    await this.#inner.close();
  }

  async #withFailure<T>(
    method: Exclude<FaultMethod, 'list'>,
    type: ObjectType | undefined,
    key: string,
    call: () => Promise<T>,
  ): Promise<T> {
    const spec = this.#faults[method];
    const fail = this.#roll(method, spec?.failTimes, spec?.failProbability, type, spec);
    const delay = this.#delay(type, spec);
    if (delay !== undefined) await delay;
    if (fail && !spec?.failAfter) {
      this.#injected.push({ method, kind: 'fail', key });
      throw injectedError(spec, `${method} ${key}`.trimEnd());
    }
    const result = await call();
    if (fail) {
      this.#injected.push({ method, kind: 'fail', key });
      throw injectedError(spec, `${method} ${key} (after it took effect)`);
    }
    return result;
  }

  /** Waits `spec.delayMs` when the spec applies to `type` (`undefined`: `create`, always). */
  #delay(type: ObjectType | undefined, spec: FaultSpec | undefined): Promise<void> | undefined {
    const ms = spec?.delayMs ?? 0;
    if (!(ms > 0)) return undefined;
    if (spec?.types !== undefined && type !== undefined && !spec.types.includes(type)) return undefined;
    return (this.#faults.sleep ?? defaultSleep)(ms);
  }

  /** Decides one fault: counted ones first, then the probability. Draws a number only when a probability is set. */
  #roll(
    counter: string,
    times: number | undefined,
    probability: number | undefined,
    type: ObjectType | undefined,
    spec: FaultSpec | undefined,
  ): boolean {
    if (spec?.types !== undefined && type !== undefined && !spec.types.includes(type)) return false;
    const used = this.#used.get(counter) ?? 0;
    if (used < (times ?? 0)) {
      this.#used.set(counter, used + 1);
      return true;
    }
    if (probability === undefined || probability <= 0) return false;
    return this.#random() < probability;
  }
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function injectedError(spec: FaultSpec | undefined, what: string): ForgeError {
  const code = spec?.code ?? ForgeErrorCodes.FORGE_IO;
  return new ForgeError(code, `injected fault: ${what}`, {
    retryable: spec?.retryable ?? code === ForgeErrorCodes.FORGE_IO,
    details: { injected: true },
  });
}

/** A small, fast, seedable PRNG (mulberry32): uniform numbers in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
