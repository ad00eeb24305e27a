import { describe, expect, it } from 'vitest';
import { ForgeError, InternalError, toForgeError } from './errors.ts';

describe('toForgeError', () => {
  it('maps errno codes to stable codes with the right retryability', () => {
    const enospc = toForgeError(Object.assign(new Error('x'), { code: 'ENOSPC', path: '/t' }));
    expect(enospc.code).toBe('FORGE_NO_SPACE');
    expect(enospc.retryable).toBe(false);
    const reset = toForgeError(Object.assign(new Error('x'), { code: 'ECONNRESET' }));
    expect(reset.code).toBe('FORGE_IO');
    expect(reset.retryable).toBe(true);
    expect(toForgeError(Object.assign(new Error('x'), { code: 'EACCES' })).code).toBe('FORGE_PERMISSION');
  });
  it('keeps ForgeErrors and turns unknown throws into InternalError', () => {
    const e = new ForgeError('FORGE_INTEGRITY', 'bad');
    expect(toForgeError(e)).toBe(e);
    const i = toForgeError(new TypeError('oops'));
    expect(i).toBeInstanceOf(InternalError);
    expect(i.code).toBe('FORGE_INTERNAL');
  });
  it('renders one line with the hint', () => {
    expect(new ForgeError('FORGE_USAGE', 'no repo', { hint: 'pass -r' }).toOneLine()).toBe(
      'no repo; pass -r',
    );
  });
});
