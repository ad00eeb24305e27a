import type { ObjectHandle, ObjectType } from '@backupforge/common';
import { ForgeError, ForgeErrorCodes, OBJECT_TYPES } from '@backupforge/common';

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/**
 * Rejects handles whose name could escape the object's key prefix or collide with temporary
 * files: `../x`, `a/b`, `.tmp-…`, empty names, packs shorter than their 2-character directory.
 * Object names are lowercase hex in practice; this only enforces what keeps keys well-formed.
 */
export function checkHandle(handle: ObjectHandle): void {
  checkType(handle.type);
  if (handle.type === 'config') return;
  const minLength = handle.type === 'pack' ? 2 : 1;
  if (typeof handle.name !== 'string' || handle.name.length < minLength || !SAFE_NAME.test(handle.name)) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `invalid ${handle.type} name ${JSON.stringify(handle.name)}: names are letters, digits, '-' and '_'`,
    );
  }
}

/** Validates a `{ offset, length }` range against an object of `size` bytes. */
export function checkRange(range: { offset: number; length: number }, size: number, what: string): void {
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_USAGE,
      `invalid range {offset: ${offset}, length: ${length}} for ${what}: both must be non-negative integers`,
    );
  }
  if (offset + length > size) {
    throw new ForgeError(
      ForgeErrorCodes.FORGE_RANGE,
      `range {offset: ${offset}, length: ${length}} reaches past the end of ${what} (${size} bytes)`,
      { details: { offset, length, size } },
    );
  }
}

export function checkType(type: ObjectType): void {
  if (!OBJECT_TYPES.includes(type)) {
    throw new ForgeError(ForgeErrorCodes.FORGE_USAGE, `unknown object type ${JSON.stringify(type)}`);
  }
}
