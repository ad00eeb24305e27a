import { describe, expect, it } from 'vitest';
import { InOrder } from './in-order.ts';

describe('InOrder', () => {
  it('adds in turn order whatever order turns finish in, and each done waits for the turns before it', async () => {
    const added: string[] = [];
    const order = new InOrder<string>(async (x) => {
      added.push(x);
    });
    const [a, b, c, d] = [order.take(), order.take(), order.take(), order.take()];
    const settled: number[] = [];
    const pc = order.done(c, 'c').then(() => settled.push(c));
    const pb = order.done(b, undefined).then(() => settled.push(b)); // a turn with nothing to add
    await new Promise((r) => setTimeout(r, 5));
    expect(added).toEqual([]); // turn a is not over: nothing may go in before it
    expect(settled).toEqual([]);
    const pa = order.done(a, 'a').then(() => settled.push(a));
    await Promise.all([pa, pb, pc]);
    expect(added).toEqual(['a', 'c']);
    await order.done(d, 'd');
    expect(added).toEqual(['a', 'c', 'd']);
  });

  it('a failed add fails the turns after it', async () => {
    const order = new InOrder<number>(async (x) => {
      if (x === 1) throw new Error('disk full');
    });
    const t0 = order.take();
    const t1 = order.take();
    const t2 = order.take();
    const later = order.done(t2, 2);
    const failed = order.done(t1, 1);
    const first = order.done(t0, 0);
    await first; // before the failure: added
    await expect(failed).rejects.toThrow('disk full');
    await expect(later).rejects.toThrow('disk full');
  });
});
