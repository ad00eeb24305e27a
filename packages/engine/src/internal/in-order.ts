/**
 * Hands items to `add` in the order their turns were taken, whatever order they finish in:
 * `copy` takes a turn per blob as its walk reaches it, and the workers finish them out of order,
 * yet the destination's packs hold them in walk order (as a backup's do), so small files stay
 * together for restore. A failed `add` fails every turn after it.
 */
export class InOrder<T> {
  readonly #add: (item: T) => Promise<void>;
  #taken = 0;
  #next = 0;
  readonly #finished = new Map<number, { item: T | undefined; settle: (e?: unknown) => void }>();
  #pumping = false;
  #failure: { error: unknown } | undefined;

  constructor(add: (item: T) => Promise<void>) {
    this.#add = add;
  }

  /** The next turn. Every turn taken must be passed to `done` once, or later ones wait forever. */
  take(): number {
    return this.#taken++;
  }

  /**
   * Turn `turn` is over, with an item to add or none. Resolves once the item is added (after
   * every earlier turn's); rejects with the error of a failed add, this one's or an earlier one's.
   */
  done(turn: number, item: T | undefined): Promise<void> {
    const p = new Promise<void>((resolve, reject) => {
      this.#finished.set(turn, { item, settle: (e) => (e === undefined ? resolve() : reject(e)) });
    });
    void this.#pump();
    return p;
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    for (let f = this.#finished.get(this.#next); f; f = this.#finished.get(this.#next)) {
      this.#finished.delete(this.#next);
      this.#next++;
      try {
        if (this.#failure) throw this.#failure.error;
        if (f.item !== undefined) await this.#add(f.item);
        f.settle();
      } catch (e) {
        this.#failure ??= { error: e };
        f.settle(this.#failure.error);
      }
    }
    this.#pumping = false;
  }
}
