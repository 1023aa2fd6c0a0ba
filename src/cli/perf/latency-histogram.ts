/**
 * A fixed-bucket log-linear latency histogram in one Float64Array, in the manner of
 * HdrHistogram: values are whole microseconds; below 2048 µs every value has its own bucket,
 * and each octave above that is cut into 1024 equal buckets, so a reported value is within
 * 0.1 % of the true one. Values are clamped to [0, 2^31) µs (about 36 minutes). Recording is
 * a few arithmetic operations and one increment; nothing is allocated.
 */
const LINEAR = 2048;
const SUB_BITS = 10;
const SUB = 1 << SUB_BITS;
const FIRST_EXP = 11; // 2^11 = LINEAR
const MAX_EXP = 30;
const MAX_US = 2 ** 31 - 1;
/** Number of buckets: the linear range plus 1024 per octave from 2^11 to 2^31. */
export const BUCKETS = LINEAR + (MAX_EXP - FIRST_EXP + 1) * SUB;

function indexOf(us: number): number {
  if (us < LINEAR) return us;
  const exp = 31 - Math.clz32(us);
  return LINEAR + (exp - FIRST_EXP) * SUB + ((us >>> (exp - SUB_BITS)) & (SUB - 1));
}

/** The highest value (µs) that lands in bucket i. */
function upperOf(i: number): number {
  if (i < LINEAR) return i;
  const k = i - LINEAR;
  const exp = FIRST_EXP + Math.floor(k / SUB);
  const sub = k % SUB;
  const width = 2 ** (exp - SUB_BITS);
  return 2 ** exp + (sub + 1) * width - 1;
}

export class LatencyHistogram {
  readonly counts = new Float64Array(BUCKETS);
  count = 0;
  /** Exact extremes and sum, in ms. */
  max = 0;
  min = Infinity;
  sum = 0;

  /** Records one latency in milliseconds (negative values, from clock skew, count as 0). */
  record(ms: number): void {
    let us = Math.round(ms * 1000);
    if (!(us > 0)) us = 0;
    else if (us > MAX_US) us = MAX_US;
    this.counts[indexOf(us)]++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < this.min) this.min = ms;
  }

  reset(): void {
    if (this.count === 0) return;
    this.counts.fill(0);
    this.count = 0;
    this.max = 0;
    this.min = Infinity;
    this.sum = 0;
  }

  add(other: LatencyHistogram): void {
    if (other.count === 0) return;
    const a = this.counts;
    const b = other.counts;
    for (let i = 0; i < BUCKETS; i++) if (b[i] !== 0) a[i] += b[i]!;
    this.#addSummary(other.count, other.max, other.min, other.sum);
  }

  #addSummary(count: number, max: number, min: number, sum: number): void {
    this.count += count;
    this.sum += sum;
    if (max > this.max) this.max = max;
    if (min < this.min) this.min = min;
  }

  /** The value in ms at or below which p percent of the recorded values lie; NaN if empty. */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const target = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    const c = this.counts;
    for (let i = 0; i < BUCKETS; i++) {
      seen += c[i]!;
      if (seen >= target) return Math.min(upperOf(i) / 1000, this.max);
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? NaN : this.sum / this.count;
  }

  /** The non-empty buckets as [index, count, …] plus the summary, for postMessage. */
  toSparse(): SparseHistogram {
    const pairs: number[] = [];
    const c = this.counts;
    for (let i = 0; i < BUCKETS; i++) if (c[i] !== 0) pairs.push(i, c[i]!);
    return { pairs: Float64Array.from(pairs), count: this.count, max: this.max, min: this.min, sum: this.sum };
  }

  addSparse(s: SparseHistogram): void {
    if (s.count === 0) return;
    const c = this.counts;
    for (let i = 0; i < s.pairs.length; i += 2) c[s.pairs[i]!] += s.pairs[i + 1]!;
    this.#addSummary(s.count, s.max, s.min, s.sum);
  }
}

export interface SparseHistogram {
  pairs: Float64Array;
  count: number;
  max: number;
  min: number;
  sum: number;
}
