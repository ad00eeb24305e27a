import { expect, it } from 'vitest';
import { OBJECT_TYPES, objectKey } from './storage.ts';

it('public API surface', async () => {
  expect(Object.keys(await import('./index.ts')).sort()).toMatchInlineSnapshot(`
    [
      "DIRECT_ALIGN",
      "ForgeError",
      "ForgeErrorCodes",
      "InternalError",
      "OBJECT_DIRS",
      "OBJECT_TYPES",
      "TRANSIENT_NETWORK_CODES",
      "alignedBuffer",
      "isForgeError",
      "isHexId",
      "objectKey",
      "shortId",
      "silentReporter",
      "toForgeError",
    ]
  `);
});

it('maps every object type onto a flat key', () => {
  const name = 'ab'.repeat(32);
  expect(OBJECT_TYPES.map((type) => objectKey({ type, name: type === 'config' ? 'config' : name }))).toEqual([
    'config',
    `keys/${name}`,
    `data/ab/${name}`,
    `index/${name}`,
    `snapshots/${name}`,
    `locks/${name}`,
  ]);
});
