import { readFile } from 'node:fs/promises';

/** Maps numeric ids to names, from an `/etc/passwd`- or `/etc/group`-style file. */
export type IdNames = ReadonlyMap<number, string>;

/** Parses `name:x:id:...` lines; the first name of an id wins (as getpwuid does). */
export function parseIdFile(text: string): Map<number, string> {
  const map = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    const name = fields[0];
    const id = Number(fields[2]);
    if (!name || !Number.isInteger(id) || id < 0 || map.has(id)) continue;
    map.set(id, name);
  }
  return map;
}

async function readIdFile(file: string): Promise<Map<number, string>> {
  try {
    return parseIdFile(await readFile(file, 'utf8'));
  } catch {
    return new Map();
  }
}

let cache: Promise<{ users: IdNames; groups: IdNames }> | undefined;

/** User and group names from /etc/passwd and /etc/group, read once per process. */
export function loadIdNames(): Promise<{ users: IdNames; groups: IdNames }> {
  cache ??= Promise.all([readIdFile('/etc/passwd'), readIdFile('/etc/group')]).then(([users, groups]) => ({
    users,
    groups,
  }));
  return cache;
}
