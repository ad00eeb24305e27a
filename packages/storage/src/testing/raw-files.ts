import { access, mkdir, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { BackendFixture } from './describe-backend.ts';

/** `BackendFixture.raw` for a backend whose repository is the local directory `root`. */
export function rawFileAccess(root: string): NonNullable<BackendFixture['raw']> {
  return {
    async write(path, data, ageMs) {
      const file = join(root, ...path.split('/'));
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, data);
      const then = new Date(Date.now() - ageMs);
      await utimes(file, then, then);
    },
    async exists(path) {
      return access(join(root, ...path.split('/'))).then(
        () => true,
        () => false,
      );
    },
  };
}
