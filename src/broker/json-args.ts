/**
 * Declaration arguments arrive as field-table values (numbers, strings, Buffers, bigints,
 * typed wrappers). Definitions are stored as JSON, so they are converted to a JSON-safe form
 * and compared in that form (equivalence checks on re-declare).
 */
export function toJsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (Buffer.isBuffer(v)) return { $bytes: v.toString('base64') };
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('base64') };
  if (Array.isArray(v)) return v.map(toJsonSafe);
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    // A typed field value ({ type, value }) compares by its value, as RabbitMQ does for equivalence.
    if ('type' in o && 'value' in o && Object.keys(o).length === 2) return toJsonSafe(o['value']);
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o).sort()) out[k] = toJsonSafe(o[k]);
    return out;
  }
  return v;
}

export function argsEqual(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  return JSON.stringify(toJsonSafe(a)) === JSON.stringify(toJsonSafe(b));
}

/** A number from an argument that may be a number, bigint, numeric string or typed wrapper. */
export function numberArg(v: unknown): number | undefined {
  if (v !== null && typeof v === 'object' && 'value' in (v as object)) v = (v as { value: unknown }).value;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

export function stringArg(v: unknown): string | undefined {
  if (v !== null && typeof v === 'object' && 'value' in (v as object)) v = (v as { value: unknown }).value;
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return undefined;
}

/** RabbitMQ's name for the field-table type an argument came in as (for error texts). */
export function argType(v: unknown): string {
  if (v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && 'type' in v && 'value' in v) v = (v as { value: unknown }).value;
  if (typeof v === 'string') return 'longstr';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'bigint') return 'long';
  if (typeof v === 'number') return !Number.isInteger(v) ? 'double' : v >= -2147483648 && v <= 2147483647 ? 'signedint' : 'long';
  if (Buffer.isBuffer(v)) return 'binary';
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'void';
  return typeof v === 'object' ? 'table' : typeof v;
}
