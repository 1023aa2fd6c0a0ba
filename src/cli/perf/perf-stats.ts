/**
 * Counters and latency of one thread's producers and consumers. The coordinator takes an
 * interval (deltas since the last take, and that interval's latency histogram) once a second;
 * worker threads send the same object through postMessage.
 */
import { LatencyHistogram, type SparseHistogram } from './latency-histogram.js';

export interface IntervalStats {
  published: number;
  confirmed: number;
  nacked: number;
  returned: number;
  consumed: number;
  /** nowMs() of the last message consumed, 0 if none yet. */
  lastConsumeAt: number;
  /** Producers blocked by connection.blocked at the time of the take. */
  blocked: number;
  latency: SparseHistogram;
}

export class PerfStats {
  published = 0;
  confirmed = 0;
  nacked = 0;
  returned = 0;
  consumed = 0;
  lastConsumeAt = 0;
  blocked = 0;
  /** Whether consumers record latency (false once the run stops). */
  recording = true;
  readonly interval = new LatencyHistogram();
  #taken = { published: 0, confirmed: 0, nacked: 0, returned: 0, consumed: 0 };

  take(): IntervalStats {
    const t = this.#taken;
    const out: IntervalStats = {
      published: this.published - t.published,
      confirmed: this.confirmed - t.confirmed,
      nacked: this.nacked - t.nacked,
      returned: this.returned - t.returned,
      consumed: this.consumed - t.consumed,
      lastConsumeAt: this.lastConsumeAt,
      blocked: this.blocked,
      latency: this.interval.toSparse(),
    };
    this.#taken = { published: this.published, confirmed: this.confirmed, nacked: this.nacked, returned: this.returned, consumed: this.consumed };
    this.interval.reset();
    return out;
  }
}

/** Sum of several threads' intervals, plus run totals, kept by the coordinator. */
export class StatsTotals {
  published = 0;
  confirmed = 0;
  nacked = 0;
  returned = 0;
  consumed = 0;
  lastConsumeAt = 0;
  readonly latency = new LatencyHistogram();

  /** Adds intervals from every thread; returns their sum as one interval (with a histogram). */
  add(parts: readonly IntervalStats[]): { published: number; confirmed: number; nacked: number; consumed: number; blocked: number; latency: LatencyHistogram } {
    const sum = { published: 0, confirmed: 0, nacked: 0, consumed: 0, blocked: 0, latency: new LatencyHistogram() };
    for (const p of parts) {
      sum.published += p.published;
      sum.confirmed += p.confirmed;
      sum.nacked += p.nacked;
      sum.consumed += p.consumed;
      sum.blocked += p.blocked;
      this.returned += p.returned;
      if (p.lastConsumeAt > this.lastConsumeAt) this.lastConsumeAt = p.lastConsumeAt;
      sum.latency.addSparse(p.latency);
    }
    this.published += sum.published;
    this.confirmed += sum.confirmed;
    this.nacked += sum.nacked;
    this.consumed += sum.consumed;
    this.latency.add(sum.latency);
    return sum;
  }
}
