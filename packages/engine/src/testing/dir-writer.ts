// A restore target's worker-side writer for tests (see `RestoreTarget.localFiles`): creates the
// file with O_EXCL, so a file already at the path fails that file alone. Imported by the blob
// workers by URL, so it imports nothing but Node.
import { writeFileSync } from 'node:fs';

export function writeWholeFile(
  path: string,
  _meta: unknown,
  data: Uint8Array,
  options: { tag: string },
): void {
  if (options.tag !== 'dir-writer') throw new Error('options did not arrive');
  writeFileSync(path, data, { flag: 'wx' });
}
