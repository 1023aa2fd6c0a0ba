/**
 * The headers exchange's rule (RabbitMQ rabbit_exchange_type_headers): binding arguments are
 * matched against message headers. x-match = all (default) | any | all-with-x | any-with-x;
 * without "-with-x", arguments starting with "x-" are ignored. A binding value of void matches
 * the header's presence.
 */
export type MatchMode = 'all' | 'any' | 'all-with-x' | 'any-with-x';

export function matchMode(args: Record<string, unknown>): MatchMode {
  const m = plain(args['x-match']);
  return m === 'any' || m === 'all-with-x' || m === 'any-with-x' ? m : 'all';
}

/** Unwraps a typed field value ({ type, value }) to its value. */
function plain(v: unknown): unknown {
  if (v !== null && typeof v === 'object' && 'type' in v && 'value' in v && Object.keys(v).length === 2) {
    return (v as { value: unknown }).value;
  }
  return v;
}

function same(a: unknown, b: unknown): boolean {
  a = plain(a);
  b = plain(b);
  if (a === b) return true;
  if (typeof a === 'bigint' || typeof b === 'bigint') return String(a) === String(b);
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return false;
}

export function headersMatch(args: Record<string, unknown>, headers: Record<string, unknown> | undefined): boolean {
  const mode = matchMode(args);
  const withX = mode === 'all-with-x' || mode === 'any-with-x';
  const any = mode === 'any' || mode === 'any-with-x';
  const h = headers ?? {};
  let considered = 0; // counted for clarity; "any" with nothing to compare matches nothing
  for (const key of Object.keys(args)) {
    if (key === 'x-match' || (!withX && key.startsWith('x-'))) continue;
    considered++;
    const want = plain(args[key]);
    const present = Object.prototype.hasOwnProperty.call(h, key);
    const ok = present && (want === null || want === undefined ? true : same(want, h[key]));
    if (any && ok) return true;
    if (!any && !ok) return false;
  }
  return !any || considered < 0;
}
