/** Text and JSON output of `sluice perf`. */
import type { LatencyHistogram } from './latency-histogram.js';
import type { PerfOptions } from './perf-options.js';
import type { StatsTotals } from './perf-stats.js';

export interface RunSummary {
  broker: string;
  elapsedMs: number;
  totals: StatsTotals;
  error: string | null;
}

const n0 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function fmtInt(v: number): string {
  return n0.format(v);
}

export function fmtMs(v: number): string {
  if (!Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function describeParams(o: PerfOptions): string {
  const parts = [
    plural(o.producers, 'producer'),
    plural(o.consumers, 'consumer'),
    `${plural(o.queues, 'queue')} (${o.exchange === '' ? 'default exchange' : `${o.exchangeType} exchange ${o.exchange}`}${o.durable ? ', durable' : ''})`,
    `${fmtInt(o.size)} B`,
    o.persistent ? 'persistent' : 'transient',
    o.confirm > 0 ? `confirm window ${o.confirm}` : 'no confirms',
    o.autoack ? 'autoack' : `manual ack every ${o.multiAck}${o.multiAck > 1 ? ' (multiple)' : ''}`,
    o.prefetch > 0 ? `prefetch ${o.prefetch}` : 'no prefetch limit',
    o.rate > 0 ? `${fmtInt(o.rate)} msg/s per producer` : 'unthrottled',
    o.duration > 0 ? `${o.duration} s` : `${fmtInt(o.count)} msg per producer`,
  ];
  if (o.warmup > 0) parts.push(`after ${o.warmup} s of warm-up`);
  if (o.workers > 0) parts.push(plural(o.workers, 'worker thread'));
  return parts.join(', ');
}

export function formatInterval(
  atMs: number,
  spanMs: number,
  s: { published: number; confirmed: number; nacked: number; consumed: number; blocked: number; latency: LatencyHistogram },
  outstanding: number,
  warmup = false,
): string {
  const rate = (v: number): string => fmtInt((v * 1000) / spanMs).padStart(9);
  const lat = s.latency.count > 0 ? `latency p50 ${fmtMs(s.latency.percentile(50))} ms, p99 ${fmtMs(s.latency.percentile(99))} ms` : 'latency -';
  const extra = (s.nacked > 0 ? `, nacked ${fmtInt(s.nacked)}` : '') + (s.blocked > 0 ? ', BLOCKED' : '');
  const at = `${(atMs / 1000).toFixed(1).padStart(6)} s${warmup ? ' warm-up' : ''}`;
  return `${at}  sent ${rate(s.published)} msg/s  confirmed ${rate(s.confirmed)} msg/s  received ${rate(s.consumed)} msg/s  unconfirmed ${fmtInt(outstanding).padStart(6)}  ${lat}${extra}`;
}

export function formatSummary(r: RunSummary): string {
  const t = r.totals;
  const secs = Math.max(r.elapsedMs / 1000, 1e-3);
  const l = t.latency;
  const lines = [
    `summary: ${secs.toFixed(2)} s against ${r.broker}${r.error !== null ? ` — FAILED: ${r.error}` : ''}`,
    `  end-to-end throughput  ${fmtInt(t.consumed / secs)} msg/s (${fmtInt(t.consumed)} consumed)`,
    `  publish rate           ${fmtInt(t.published / secs)} msg/s (${fmtInt(t.published)} published, ${fmtInt(t.confirmed)} confirmed, ${fmtInt(t.nacked)} nacked, ${fmtInt(t.returned)} returned)`,
    `  latency                p50 ${fmtMs(l.percentile(50))} ms, p99 ${fmtMs(l.percentile(99))} ms, p99.9 ${fmtMs(l.percentile(99.9))} ms, max ${fmtMs(l.count > 0 ? l.max : NaN)} ms (${fmtInt(l.count)} samples)`,
  ];
  return lines.join('\n');
}

const round3 = (v: number): number | null => (Number.isFinite(v) ? Math.round(v * 1000) / 1000 : null);

export function summaryJson(o: PerfOptions, r: RunSummary): Record<string, unknown> {
  const t = r.totals;
  const secs = Math.max(r.elapsedMs / 1000, 1e-3);
  const l = t.latency;
  return {
    tool: 'sluice perf',
    mode: 'throughput',
    label: o.label,
    broker: r.broker,
    params: {
      producers: o.producers,
      consumers: o.consumers,
      queues: o.queues,
      exchangeType: o.exchangeType,
      exchange: o.exchange,
      durable: o.durable,
      size: o.size,
      rate: o.rate,
      persistent: o.persistent,
      confirm: o.confirm,
      autoack: o.autoack,
      prefetch: o.prefetch,
      multiAck: o.multiAck,
      duration: o.duration,
      warmup: o.warmup,
      count: o.count,
      workers: o.workers,
    },
    elapsedS: round3(secs),
    published: t.published,
    confirmed: t.confirmed,
    nacked: t.nacked,
    returned: t.returned,
    consumed: t.consumed,
    publishRate: Math.round(t.published / secs),
    confirmRate: Math.round(t.confirmed / secs),
    consumeRate: Math.round(t.consumed / secs),
    latencyMs: {
      samples: l.count,
      p50: round3(l.percentile(50)),
      p99: round3(l.percentile(99)),
      p999: round3(l.percentile(99.9)),
      max: round3(l.count > 0 ? l.max : NaN),
      mean: round3(l.mean()),
    },
    error: r.error,
  };
}
