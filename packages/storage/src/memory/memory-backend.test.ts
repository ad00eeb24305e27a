import { describe, expect, it } from 'vitest';
import { describeBackend } from '../testing/describe-backend.ts';
import { createMemoryBackend } from './memory-backend.ts';

describeBackend('memory', async () => ({ backend: createMemoryBackend() }));

describe('memory backend', () => {
  it('is ephemeral and atomic', () => {
    const backend = createMemoryBackend();
    expect(backend.location).toBe('memory:');
    expect(backend.properties()).toMatchObject({ atomicReplace: true, ephemeral: true });
  });

  it('keeps separate backends apart', async () => {
    const a = createMemoryBackend();
    const b = createMemoryBackend();
    await a.save({ type: 'config', name: 'config' }, new Uint8Array([1]));
    await expect(b.stat({ type: 'config', name: 'config' })).rejects.toMatchObject({
      code: 'FORGE_NOT_FOUND',
    });
  });
});
