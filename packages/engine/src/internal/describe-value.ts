/**
 * A short, safe description of an untrusted value for error messages: never calls its
 * toString/valueOf and never recurses (a planted `{"toString":1}` or a 10,000-deep array must
 * not turn a clear error into a TypeError or a stack overflow).
 */
export function describeValue(v: unknown): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
    case 'number':
    case 'boolean':
      return String(v);
    case 'object':
      return Array.isArray(v) ? 'an array' : 'an object';
    default:
      return typeof v;
  }
}
