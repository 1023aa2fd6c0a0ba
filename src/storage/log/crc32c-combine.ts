/**
 * crc32cCombine(crc(A), crc(B), |B|) = crc(A ‖ B), so a record header's CRC and its payload's
 * can be computed apart: a large payload is checksummed where it lies, without copying it next
 * to its header first (segment-log.ts, retained records).
 *
 * The method is zlib's crc32_combine (1.2.12 and later): shifting crc(A) past |B| bytes is a
 * multiplication by x^(8·|B|) modulo the CRC polynomial, built from a table of x^(2^k). It works
 * on the pre- and post-conditioned values, so any CRC32C result can be combined as it is.
 */

/** CRC32C (Castagnoli) polynomial, bit-reflected. */
const POLY = 0x82f63b78;

/** a(x)·b(x) modulo the polynomial, both reflected (bit 31 is x^0). `a` must not be 0. */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = (b & 1) !== 0 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) modulo the polynomial. */
const X2N = new Uint32Array(32);
{
  let p = 0x40000000; // x^1
  X2N[0] = p;
  for (let k = 1; k < 32; k++) X2N[k] = p = multModP(p, p);
}

/** x^(n·2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multModP(X2N[k & 31]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** The CRC32C of A followed by B, from crc1 = CRC32C(A), crc2 = CRC32C(B) and len2 = |B|. */
export function crc32cCombine(crc1: number, crc2: number, len2: number): number {
  if (len2 === 0) return crc1 >>> 0;
  return (multModP(x2nModP(len2, 3), crc1 >>> 0) ^ crc2) >>> 0;
}
