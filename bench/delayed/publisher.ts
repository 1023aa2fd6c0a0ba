/**
 * Worker thread that publishes the delayed messages, so its CPU work (amqplib encoding, confirm
 * callbacks) runs off the consumer's event loop and the consumer's receive timestamps are not
 * held up by it.
 *
 * Message i is due at dueAt[i] (ms since epoch, chosen by the main thread) and is published with
 * x-delay = round(dueAt − now) at the moment it is handed to amqplib (or x-deliver-at = dueAt). Body (bodySize bytes):
 *   dueAt:f64le seq:u32le flags:u8 filler…    flags bit 0: published at or after its due time
 * Confirms: one confirm channel per connection, at most `window / connections` unconfirmed
 * on each. confirmed[i] is set to 1 on ack and 2 on nack (shared with the main thread).
 */
import amqp from 'amqplib';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

export interface PublisherInput {
  url: string;
  exchange: string;
  routingKey: string;
  count: number;
  /** SharedArrayBuffer of count f64: the due time of each seq. */
  dueAt: SharedArrayBuffer;
  /** SharedArrayBuffer of count u8: 1 confirmed, 2 nacked. */
  confirmed: SharedArrayBuffer;
  /** SharedArrayBuffer of count f64: when each seq was handed to amqplib (ms since epoch). */
  sentAt: SharedArrayBuffer;
  /** SharedArrayBuffer of count f64: when its confirm arrived (ms since epoch). */
  confirmedAt: SharedArrayBuffer;
  window: number;
  /** 'delay': header x-delay = dueAt − now; 'at': header x-deliver-at = dueAt. */
  dueHeader: 'delay' | 'at';
  /** Nice value for this thread (0: unchanged), so that on a small machine the load generator yields to the broker and the consumer. */
  nice: number;
  connections: number;
  bodySize: number;
}

export type PublisherMessage =
  | { kind: 'progress'; sent: number; confirmed: number }
  | {
      kind: 'done';
      startedAt: number;
      finishedAt: number;
      sent: number;
      acked: number;
      nacked: number;
      pastDue: number;
      /** Publish → confirm latency in ms (an upper bound on how late the broker saw the x-delay). */
      confirmMs: { p50: number; p99: number; p999: number; max: number };
    }
  | { kind: 'error'; message: string };

const input = workerData as PublisherInput;
const dueAt = new Float64Array(input.dueAt);
const confirmed = new Uint8Array(input.confirmed);
const confirmLatency = new Float32Array(input.count);
const sentAt = new Float64Array(input.sentAt);
const confirmedAt = new Float64Array(input.confirmedAt);

function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

function quantile(sorted: Float32Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function publishOn(url: string, next: () => number, windowPerChannel: number, counters: { acked: number; nacked: number; pastDue: number; sent: number }): Promise<() => Promise<void>> {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  let outstanding = 0;
  let wake: (() => void) | null = null;
  let failed: Error | null = null;
  ch.on('error', (e: Error) => {
    failed = e;
    wake?.();
  });
  const body = Buffer.alloc(input.bodySize, 0x78);
  return async () => {
    for (;;) {
      if (failed) throw failed;
      const seq = next();
      if (seq < 0) break;
      const now = nowMs();
      const due = dueAt[seq]!;
      let delay = Math.round(due - now);
      const content = Buffer.from(body);
      content.writeDoubleLE(due, 0);
      content.writeUInt32LE(seq, 8);
      if (delay <= 0) {
        content[12] = 1;
        counters.pastDue++;
        delay = 0;
      } else content[12] = 0;
      sentAt[seq] = now;
      outstanding++;
      counters.sent++;
      const ok = ch.publish(input.exchange, input.routingKey, content, { persistent: true, headers: input.dueHeader === 'at' ? { 'x-deliver-at': Math.ceil(due) } : { 'x-delay': delay } }, (err) => {
        outstanding--;
        if (err) {
          confirmed[seq] = 2;
          counters.nacked++;
        } else {
          confirmed[seq] = 1;
          counters.acked++;
        }
        const at = nowMs();
        confirmedAt[seq] = at;
        confirmLatency[seq] = at - sentAt[seq]!;
        if (wake && outstanding < windowPerChannel) {
          const w = wake;
          wake = null;
          w();
        }
      });
      if (!ok) await new Promise<void>((r) => ch.once('drain', () => r()));
      if (outstanding >= windowPerChannel) await new Promise<void>((r) => (wake = r));
    }
    while (outstanding > 0) {
      if (failed) throw failed;
      await new Promise<void>((r) => (wake = r));
    }
    await conn.close();
  };
}

/** Lowers this worker thread's scheduling priority: on Linux, setpriority() on a thread id applies to that thread only. */
function niceThisThread(nice: number): void {
  if (nice === 0) return;
  const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  setPriority(tid, nice);
}

async function main(): Promise<void> {
  niceThisThread(input.nice);
  let nextSeq = 0;
  const next = (): number => (nextSeq < input.count ? nextSeq++ : -1);
  const counters = { acked: 0, nacked: 0, pastDue: 0, sent: 0 };
  const per = Math.max(1, Math.floor(input.window / input.connections));
  const runners: Array<() => Promise<void>> = [];
  for (let i = 0; i < input.connections; i++) runners.push(await publishOn(input.url, next, per, counters));
  const progress = setInterval(() => parentPort!.postMessage({ kind: 'progress', sent: counters.sent, confirmed: counters.acked + counters.nacked } satisfies PublisherMessage), 1000);
  const startedAt = Date.now();
  await Promise.all(runners.map((r) => r()));
  const finishedAt = Date.now();
  clearInterval(progress);
  const sorted = confirmLatency.slice(0, input.count).sort();
  parentPort!.postMessage({
    kind: 'done',
    startedAt,
    finishedAt,
    sent: counters.sent,
    acked: counters.acked,
    nacked: counters.nacked,
    pastDue: counters.pastDue,
    confirmMs: { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), p999: quantile(sorted, 0.999), max: sorted[sorted.length - 1] ?? NaN },
  } satisfies PublisherMessage);
}

main().catch((e: unknown) => parentPort!.postMessage({ kind: 'error', message: (e as Error).stack ?? String(e) } satisfies PublisherMessage));
