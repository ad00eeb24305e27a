import { createSecretKey, type KeyObject } from 'node:crypto';

const cache = new WeakMap<Uint8Array, KeyObject>();

/**
 * The KeyObject for a raw key, made once per key buffer. node:crypto turns a raw key into a
 * KeyObject on every createHmac/createCipheriv call otherwise, which showed up as a whole second
 * of a restore's profile.
 */
export function keyObject(key: Uint8Array): KeyObject {
  let k = cache.get(key);
  if (!k) {
    k = createSecretKey(key);
    cache.set(key, k);
  }
  return k;
}
