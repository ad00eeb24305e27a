/** The `code` of a Node system error (`ENOENT`, `EINVAL`, ...), or undefined for anything else. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
