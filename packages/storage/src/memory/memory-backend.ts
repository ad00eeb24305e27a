import type {
  BackendProperties,
  ByteRange,
  ObjectHandle,
  ObjectInfo,
  ObjectType,
  StorageBackend,
} from '@backupforge/common';
import { ForgeError, ForgeErrorCodes, objectKey } from '@backupforge/common';
import { checkHandle, checkRange, checkType } from '../internal/check-handle.ts';

const PROPERTIES: BackendProperties = Object.freeze({
  atomicReplace: true,
  connections: 16,
  ephemeral: true,
});

/**
 * A repository held in a `Map`, for tests and dry runs. Same contract as every backend: it
 * copies bytes on `save` and on `load`, so callers can never alias stored objects, and it
 * passes `describeBackend`. Nothing survives the process.
 *
 * ```ts
 * const backend = createMemoryBackend();
 * await backend.save({ type: 'config', name: 'config' }, bytes);
 * ```
 */
export function createMemoryBackend(): StorageBackend {
  return new MemoryBackend();
}

class MemoryBackend implements StorageBackend {
  readonly location = 'memory:';
  readonly #objects = new Map<ObjectType, Map<string, Uint8Array>>();

  properties(): BackendProperties {
    return PROPERTIES;
  }

  async create(): Promise<void> {}

  async save(handle: ObjectHandle, data: Uint8Array): Promise<void> {
    checkHandle(handle);
    const copy = data.slice();
    let objects = this.#objects.get(handle.type);
    if (objects === undefined) {
      objects = new Map();
      this.#objects.set(handle.type, objects);
    }
    objects.set(nameOf(handle), copy);
  }

  async load(handle: ObjectHandle, range?: ByteRange): Promise<Uint8Array> {
    const data = this.#get(handle);
    if (range === undefined) return data.slice();
    checkRange(range, data.length, `memory:${objectKey(handle)}`);
    return data.slice(range.offset, range.offset + range.length);
  }

  async stat(handle: ObjectHandle): Promise<ObjectInfo> {
    return { name: nameOf(handle), size: this.#get(handle).length };
  }

  async *list(type: ObjectType): AsyncIterable<ObjectInfo> {
    checkType(type);
    // Snapshot the entries first: saves and removes during the iteration must not disturb it.
    const entries = [...(this.#objects.get(type) ?? [])];
    for (const [name, data] of entries) yield { name, size: data.length };
  }

  async remove(handle: ObjectHandle): Promise<void> {
    checkHandle(handle);
    this.#objects.get(handle.type)?.delete(nameOf(handle));
  }

  async close(): Promise<void> {}

  #get(handle: ObjectHandle): Uint8Array {
    checkHandle(handle);
    const data = this.#objects.get(handle.type)?.get(nameOf(handle));
    if (data === undefined) {
      throw new ForgeError(ForgeErrorCodes.FORGE_NOT_FOUND, `memory:${objectKey(handle)} does not exist`);
    }
    return data;
  }
}

/** `config` has one fixed key whatever name the handle carries, exactly as `objectKey` maps it. */
function nameOf(handle: ObjectHandle): string {
  return handle.type === 'config' ? 'config' : handle.name;
}
