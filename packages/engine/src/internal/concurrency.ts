/** Maps with at most `limit` calls in flight; results keep input order. Rejects on the first failure. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** A counting semaphore for bounding bytes or tasks in flight. */
export class Semaphore {
  #available: number;
  readonly #waiters: { n: number; resolve: () => void }[] = [];
  constructor(capacity: number) {
    this.#available = capacity;
  }
  async acquire(n = 1): Promise<void> {
    if (this.#waiters.length === 0 && this.#available >= n) {
      this.#available -= n;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push({ n, resolve }));
  }
  release(n = 1): void {
    this.#available += n;
    while (this.#waiters.length > 0 && this.#available >= this.#waiters[0]!.n) {
      const w = this.#waiters.shift()!;
      this.#available -= w.n;
      w.resolve();
    }
  }
}
