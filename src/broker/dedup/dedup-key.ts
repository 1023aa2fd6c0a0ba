/**
 * What rabbitmq-message-deduplication reads from a message: the key in the
 * `x-deduplication-header` header and an optional per-message `x-cache-ttl` header that
 * overrides the cache's TTL. Keys are strings here, converted as queue-level deduplication
 * (queue/queue.ts) converts them, so "42" and 42 are the same key.
 */

/** The header holding a message's deduplication key. */
export const DEDUP_HEADER = 'x-deduplication-header';
/** The header overriding the cache's TTL for one message (milliseconds). */
export const DEDUP_TTL_HEADER = 'x-cache-ttl';

function unwrap(v: unknown): unknown {
  while (v !== null && typeof v === 'object' && !(v instanceof Uint8Array) && 'type' in v && 'value' in v) v = (v as { value: unknown }).value;
  return v;
}

/**
 * The cache key for a header value, or null when the message is not to be checked: no header,
 * a void value, or a table or array (which the plugin does not handle either).
 */
export function dedupKey(v: unknown): string | null {
  v = unwrap(v);
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8');
  if (typeof v === 'object') return v instanceof Date ? String(Math.floor(v.getTime() / 1000)) : null;
  return String(v);
}

/** The per-message TTL from an x-cache-ttl header value: a positive integer, else undefined (use the cache's). */
export function dedupTtl(v: unknown): number | undefined {
  v = unwrap(v);
  const n = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n > 0 ? n : undefined;
}
