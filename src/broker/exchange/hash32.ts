/**
 * A fast, deterministic 32-bit hash for routing: FNV-1a over the UTF-8 bytes, then murmur3's
 * fmix32 finalizer so that keys differing in one trailing byte ("q:a\u00001", "q:a\u00002")
 * land far apart on a hash ring (plain FNV-1a spreads a last-byte change upward only).
 *
 * The result is a signed int32: V8 boxes a returned uint32 above 2^31 as a heap number, and
 * routing must not allocate. Rings order points by this signed value.
 *
 * Stability matters more than speed here: consistent-hash rings are rebuilt from bindings at
 * every start, so changing this function (or the UTF-8 encoding of lone surrogates) would move
 * routing keys to other queues after an upgrade. Treat the outputs as a format.
 */
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/** The hash (int32) of `s` encoded as UTF-8 (lone surrogates as U+FFFD, as Buffer.from does). Allocates nothing. */
export function hash32(s: string): number {
  let h = FNV_OFFSET;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >>> 6)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
        i++;
        h = Math.imul(h ^ (0xf0 | (c >>> 18)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >>> 12) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | ((c >>> 6) & 0x3f)), FNV_PRIME);
        h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
        continue;
      }
      c = 0xfffd;
    }
    h = Math.imul(h ^ (0xe0 | (c >>> 12)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | ((c >>> 6) & 0x3f)), FNV_PRIME);
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return fmix32(h);
}

/** The same hash over raw bytes: hash32Bytes(Buffer.from(s)) === hash32(s). */
export function hash32Bytes(b: Uint8Array): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, FNV_PRIME);
  return fmix32(h);
}
