/** The `code` of a Node system error (`ENOENT`, `EINVAL`, ...), or undefined for anything else. */
export function errnoOf(e: unknown): string | undefined {
  return e && typeof e === 'object' && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}
