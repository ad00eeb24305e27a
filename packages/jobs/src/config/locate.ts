/**
 * Finds where keys sit in a TOML document. smol-toml returns plain objects without positions, so
 * this scanner walks the source once more (strings, comments, arrays and inline tables aware)
 * and records the line and column of every table header, `key =` and array element.
 *
 * It never throws: it runs only on documents smol-toml has already accepted, and on anything it
 * does not understand it skips to the next line.
 */

/** A 1-based line and column. */
export interface Position {
  readonly line: number;
  readonly column: number;
}

/** Key paths of a document mapped to their positions. */
export class SourceLocator {
  readonly #positions = new Map<string, Position>();

  /** @internal */
  record(path: readonly string[], pos: Position): void {
    const k = pathKey(path);
    if (!this.#positions.has(k)) this.#positions.set(k, pos);
  }

  /** The position of exactly this key path (array elements are indexes: `['paths', '1']`). */
  exact(path: readonly string[]): Position | undefined {
    return this.#positions.get(pathKey(path));
  }

  /**
   * The best position for a key path: the path itself; else the first place any key under it is
   * written (a table created implicitly by `[a.b.c]` or dotted keys); else its nearest ancestor.
   */
  find(path: readonly string[]): Position | undefined {
    const own = this.exact(path);
    if (own) return own;
    const prefix = path.length === 0 ? '' : `${pathKey(path)}\u0000`;
    let first: Position | undefined;
    for (const [k, pos] of this.#positions) {
      if (!k.startsWith(prefix)) continue;
      if (!first || pos.line < first.line || (pos.line === first.line && pos.column < first.column)) {
        first = pos;
      }
    }
    if (first) return first;
    return path.length > 0 ? this.find(path.slice(0, -1)) : undefined;
  }
}

function pathKey(path: readonly string[]): string {
  return path.join('\u0000');
}

const BARE_KEY = /[A-Za-z0-9_-]/;

/** Scans `text` and returns the positions of its keys. */
export function locateKeys(text: string): SourceLocator {
  return new Scanner(text).run();
}

class Scanner {
  readonly #s: string;
  #p = 0;
  readonly #loc = new SourceLocator();
  /** Line starts, for offset → line/column. */
  readonly #lineStarts: number[] = [0];
  readonly #arrayTableCounts = new Map<string, number>();

  constructor(text: string) {
    this.#s = text;
    for (let i = 0; i < text.length; i++) if (text[i] === '\n') this.#lineStarts.push(i + 1);
  }

  run(): SourceLocator {
    let table: string[] = [];
    while (this.#p < this.#s.length) {
      this.#skipBlank(true);
      if (this.#p >= this.#s.length) break;
      const start = this.#p;
      try {
        const c = this.#s[this.#p];
        if (c === '[') {
          table = this.#header();
        } else {
          const key = this.#key();
          if (key === undefined || this.#s[this.#p] !== '=') throw new SkipLine();
          this.#p++;
          const path = [...table, ...key.parts];
          this.#loc.record(path, this.#pos(key.start));
          this.#value(path);
        }
      } catch (e) {
        if (!(e instanceof SkipLine)) throw e;
        this.#p = Math.max(this.#p, start + 1);
      }
      this.#toLineEnd();
    }
    return this.#loc;
  }

  #pos(offset: number): Position {
    let lo = 0;
    let hi = this.#lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#lineStarts[mid] ?? 0) <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - (this.#lineStarts[lo] ?? 0) + 1 };
  }

  /** Skips spaces and tabs; with `newlines`, also newlines and comments. */
  #skipBlank(newlines: boolean): void {
    for (;;) {
      const c = this.#s[this.#p];
      if (c === ' ' || c === '\t') this.#p++;
      else if (newlines && (c === '\n' || c === '\r')) this.#p++;
      else if (newlines && c === '#') this.#skipComment();
      else return;
    }
  }

  #skipComment(): void {
    while (this.#p < this.#s.length && this.#s[this.#p] !== '\n') this.#p++;
  }

  /** Moves past the rest of the current line (trailing comment, or junk after a skip). */
  #toLineEnd(): void {
    this.#skipBlank(false);
    if (this.#s[this.#p] === '#') this.#skipComment();
    while (this.#p < this.#s.length && this.#s[this.#p] !== '\n') this.#p++;
  }

  #header(): string[] {
    const isArray = this.#s.startsWith('[[', this.#p);
    const open = this.#p;
    this.#p += isArray ? 2 : 1;
    this.#skipBlank(false);
    const key = this.#key();
    if (key === undefined) throw new SkipLine();
    if (!this.#s.startsWith(isArray ? ']]' : ']', this.#p)) throw new SkipLine();
    this.#p += isArray ? 2 : 1;
    let path = key.parts;
    if (isArray) {
      const k = pathKey(path);
      const n = this.#arrayTableCounts.get(k) ?? 0;
      this.#arrayTableCounts.set(k, n + 1);
      this.#loc.record(path, this.#pos(open));
      path = [...path, String(n)];
    }
    this.#loc.record(path, this.#pos(open));
    return path;
  }

  /** A possibly dotted key, followed by blanks. */
  #key(): { parts: string[]; start: number } | undefined {
    const start = this.#p;
    const parts: string[] = [];
    for (;;) {
      this.#skipBlank(false);
      const c = this.#s[this.#p];
      let part: string | undefined;
      if (c === '"' || c === "'") part = this.#string();
      else {
        const b = this.#p;
        while (this.#p < this.#s.length && BARE_KEY.test(this.#s[this.#p] ?? '')) this.#p++;
        if (this.#p > b) part = this.#s.slice(b, this.#p);
      }
      if (part === undefined) return undefined;
      parts.push(part);
      this.#skipBlank(false);
      if (this.#s[this.#p] !== '.') break;
      this.#p++;
    }
    return { parts, start };
  }

  /** A single-line basic or literal string at the cursor; returns its (unescaped enough) value. */
  #string(): string {
    const q = this.#s[this.#p];
    this.#p++;
    let out = '';
    while (this.#p < this.#s.length) {
      const c = this.#s[this.#p];
      if (c === '\n') throw new SkipLine();
      if (c === q) {
        this.#p++;
        return out;
      }
      if (c === '\\' && q === '"') {
        const n = this.#s[this.#p + 1] ?? '';
        const simple: Record<string, string> = {
          n: '\n',
          t: '\t',
          r: '\r',
          '"': '"',
          '\\': '\\',
          b: '\b',
          f: '\f',
        };
        if (n in simple) {
          out += simple[n];
          this.#p += 2;
          continue;
        }
        const len = n === 'u' ? 4 : n === 'U' ? 8 : 0;
        const hex = this.#s.slice(this.#p + 2, this.#p + 2 + len);
        if (len > 0 && /^[0-9A-Fa-f]+$/.test(hex) && hex.length === len) {
          out += String.fromCodePoint(Number.parseInt(hex, 16));
          this.#p += 2 + len;
          continue;
        }
        out += n;
        this.#p += 2;
        continue;
      }
      out += c;
      this.#p++;
    }
    throw new SkipLine();
  }

  #multilineString(): void {
    const delim = this.#s.slice(this.#p, this.#p + 3);
    this.#p += 3;
    while (this.#p < this.#s.length) {
      if (delim === '"""' && this.#s[this.#p] === '\\') {
        this.#p += 2;
        continue;
      }
      if (this.#s.startsWith(delim, this.#p)) {
        this.#p += 3;
        // Up to two more quotes may belong to the content ("""a""""" is valid).
        while (this.#s[this.#p] === delim[0] && this.#s.startsWith(delim, this.#p) === false) this.#p++;
        return;
      }
      this.#p++;
    }
  }

  #value(path: string[]): void {
    this.#skipBlank(false);
    const c = this.#s[this.#p];
    if (this.#s.startsWith('"""', this.#p) || this.#s.startsWith("'''", this.#p)) {
      this.#multilineString();
    } else if (c === '"' || c === "'") {
      this.#string();
    } else if (c === '[') {
      this.#p++;
      let i = 0;
      for (;;) {
        this.#skipBlank(true);
        if (this.#p >= this.#s.length) return;
        if (this.#s[this.#p] === ']') {
          this.#p++;
          return;
        }
        const elem = [...path, String(i++)];
        this.#loc.record(elem, this.#pos(this.#p));
        const before = this.#p;
        this.#value(elem);
        this.#skipBlank(true);
        if (this.#s[this.#p] === ',') this.#p++;
        else if (this.#p === before) throw new SkipLine();
      }
    } else if (c === '{') {
      this.#p++;
      for (;;) {
        this.#skipBlank(true);
        if (this.#p >= this.#s.length) return;
        if (this.#s[this.#p] === '}') {
          this.#p++;
          return;
        }
        const key = this.#key();
        if (key === undefined || this.#s[this.#p] !== '=') throw new SkipLine();
        this.#p++;
        const sub = [...path, ...key.parts];
        this.#loc.record(sub, this.#pos(key.start));
        this.#value(sub);
        this.#skipBlank(true);
        if (this.#s[this.#p] === ',') this.#p++;
      }
    } else {
      // A scalar: number, boolean, date. Ends at a delimiter.
      while (this.#p < this.#s.length && !/[,\]}\n#]/.test(this.#s[this.#p] ?? '')) this.#p++;
    }
  }
}

class SkipLine extends Error {}
