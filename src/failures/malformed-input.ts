// Postgres stores no NUL character in text or jsonb ("invalid byte sequence", "unsupported Unicode
// escape sequence"): a value holding one is refused before it reaches a query, as bad input rather
// than as a database fault. (JavaScript strings always encode to valid UTF-8: lone surrogates become
// U+FFFD on the way, so NUL is the one character Postgres cannot take.)

/** True when a string anywhere in a value (strings, arrays, object keys and values) holds a NUL. */
export function containsNul(value: unknown, depth = 0): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (depth > 32 || value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return value.some((v) => containsNul(v, depth + 1));
  return Object.entries(value).some(([k, v]) => k.includes('\0') || containsNul(v, depth + 1));
}

/** A request that cannot be valid whatever it asks for; answered 400 and logged at warn without a stack. */
export class MalformedRequest extends Error {
  readonly status = 400;
  readonly expose = true;
  constructor(readonly reason: string, readonly messageKey = 'error.bad_request') {
    super(`malformed request: ${reason}`);
    this.name = 'MalformedRequest';
  }
}
