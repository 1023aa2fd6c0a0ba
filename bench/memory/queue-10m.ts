/**
 * Acceptance check: a queue holding 10,000,000 persistent 1 KiB messages keeps the broker's
 * heap under 128 MB. Not part of CI (it writes ~11 GB and takes many minutes).
 *
 *   node --expose-gc dist/bench/memory/queue-10m.js [count=10000000] [--size 1024]
 *        [--window 2000] [--connections 2] [--every 1000000] [--dir PARENT] [--keep]
 *
 * The broker runs in this process (startBroker), so process.memoryUsage() is the broker's;
 * the amqplib client runs in a child process (client-child.ts) and publishes over TCP with
 * confirms, so the broker's event loop does all the broker's work and nothing else. Every
 * 1,000,000 confirmed messages: global.gc(), then process.memoryUsage() and the queue depth
 * (checkQueue from the client). Then 100,000 messages are consumed from the head. The data
 * directory is deleted at the end unless --keep.
 */
import { fork, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { startBroker } from '../../src/index.js';
import type { ClientCommand, ClientEvent } from './client-child.js';

const QUEUE = 'q10m';
const CONSUME = 100_000;

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    size: { type: 'string' },
    window: { type: 'string' },
    connections: { type: 'string' },
    dir: { type: 'string' },
    keep: { type: 'boolean' },
    every: { type: 'string' },
  },
});
const COUNT = Number(positionals[0] ?? 10_000_000);
const SIZE = Number(values.size ?? 1024);
const WINDOW = Number(values.window ?? 2000);
const CONNECTIONS = Number(values.connections ?? 2);
const MILESTONE = Number(values.every ?? 1_000_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  process.stderr.write('run with node --expose-gc (heap figures are measured after a full GC)\n');
  process.exit(2);
}

const MB = 1024 * 1024;
function mb(x: number): number {
  return Math.round((x / MB) * 10) / 10;
}
function log(s: string): void {
  process.stdout.write(`[${new Date().toISOString().slice(11, 23)}] ${s}\n`);
}
function memory(): { heapUsedMB: number; heapTotalMB: number; rssMB: number; externalMB: number; arrayBuffersMB: number } {
  const m = process.memoryUsage();
  return { heapUsedMB: mb(m.heapUsed), heapTotalMB: mb(m.heapTotal), rssMB: mb(m.rss), externalMB: mb(m.external), arrayBuffersMB: mb(m.arrayBuffers) };
}
function duBytes(dir: string): number {
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0] ?? NaN);
}

const parent = values.dir ?? tmpdir();
const dir = mkdtempSync(join(parent, 'sluice-q10m-'));
let cleaned = false;
const cleanup = (): void => {
  if (cleaned || values.keep) return;
  cleaned = true;
  rmSync(dir, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(130);
  });
}

const broker = await startBroker({ dataDir: dir, amqpPort: 0, host: '127.0.0.1', quiet: true });
log(`broker on ${broker.amqpUrl}, data in ${dir}; publishing ${COUNT} × ${SIZE} B persistent, window ${WINDOW} over ${CONNECTIONS} connections`);
gc();
const atStart = memory();
log(`start: ${JSON.stringify(atStart)}`);

const child = fork(new URL('./client-child.js', import.meta.url), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const waiters = new Map<ClientEvent['kind'], (e: ClientEvent) => void>();
const milestones: Array<Record<string, unknown>> = [];
let lastTick = { sent: 0, confirmed: 0 };
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
let peakHeap = 0;
let peakRss = 0;
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  if (m.heapUsed > peakHeap) peakHeap = m.heapUsed;
  if (m.rss > peakRss) peakRss = m.rss;
}, 1000);

function cmd(c: ClientCommand): void {
  child.send(c);
}
function next<K extends ClientEvent['kind']>(kind: K): Promise<Extract<ClientEvent, { kind: K }>> {
  return new Promise((resolve) => waiters.set(kind, resolve as (e: ClientEvent) => void));
}

const started = performance.now();
let lastMilestoneAt = started;
let lastMilestoneCount = 0;
let milestoneChain = Promise.resolve();

async function onMilestone(confirmed: number): Promise<void> {
  const now = performance.now();
  const rate = Math.round((confirmed - lastMilestoneCount) / ((now - lastMilestoneAt) / 1000));
  lastMilestoneAt = now;
  lastMilestoneCount = confirmed;
  const g = performance.now();
  gc!();
  const gcMs = Math.round(performance.now() - g);
  const mem = memory();
  const d = next('depth');
  cmd({ cmd: 'depth' });
  const depth = (await d).messageCount;
  const entry = { confirmed, depth, elapsedSecs: Math.round((now - started) / 100) / 10, msgPerSecSinceLast: rate, gcMs, ...mem, loadAvg1m: Math.round(loadavg()[0]! * 10) / 10 };
  milestones.push(entry);
  log(`${confirmed} confirmed, depth ${depth}, ${entry.elapsedSecs} s, ${rate} msg/s; after gc (${gcMs} ms): heapUsed ${mem.heapUsedMB} MB, heapTotal ${mem.heapTotalMB}, rss ${mem.rssMB}, external ${mem.externalMB}, arrayBuffers ${mem.arrayBuffersMB}; load ${entry.loadAvg1m}`);
}

child.on('message', (e: ClientEvent) => {
  if (e.kind === 'tick') {
    lastTick = e;
    return;
  }
  if (e.kind === 'milestone') {
    milestoneChain = milestoneChain.then(() => onMilestone(e.confirmed));
    return;
  }
  if (e.kind === 'error') {
    log(`client error: ${e.message}`);
    cleanup();
    process.exit(1);
  }
  const w = waiters.get(e.kind);
  waiters.delete(e.kind);
  w?.(e);
});
child.once('exit', (code) => {
  if (code !== 0 && code !== null) log(`client exited with ${code} (last tick ${JSON.stringify(lastTick)})`);
});

const published = next('published');
cmd({ cmd: 'publish', url: broker.amqpUrl, queue: QUEUE, count: COUNT, size: SIZE, window: WINDOW, connections: CONNECTIONS, reportEvery: MILESTONE });
const pub = await published;
await milestoneChain;
const publishSecs = pub.secs;
gc();
const afterPublish = memory();
const depthAfterPublish = await (async () => {
  const d = next('depth');
  cmd({ cmd: 'depth' });
  return (await d).messageCount;
})();
const diskBytes = duBytes(dir);
log(`published ${pub.acked} (nacked ${pub.nacked}) in ${publishSecs.toFixed(1)} s = ${Math.round(pub.acked / publishSecs)} msg/s; depth ${depthAfterPublish}; data dir ${(diskBytes / 1e9).toFixed(2)} GB; after gc ${JSON.stringify(afterPublish)}`);

const consumed = next('consumed');
cmd({ cmd: 'consume', count: CONSUME, prefetch: 1000 });
const con = await consumed;
gc();
const afterConsume = memory();
const depthAfterConsume = await (async () => {
  const d = next('depth');
  cmd({ cmd: 'depth' });
  return (await d).messageCount;
})();
log(`consumed ${con.count} from the head in ${con.secs.toFixed(2)} s (${Math.round(con.count / con.secs)} msg/s), seqs ${con.minSeq}..${con.maxSeq}, out of order (per publishing connection) ${con.outOfOrder}, redelivered ${con.redelivered}; depth ${depthAfterConsume}; after gc ${JSON.stringify(afterConsume)}`);

clearInterval(sampler);
loop.disable();
cmd({ cmd: 'exit' });
const c0 = performance.now();
await broker.close();
const closeMs = Math.round(performance.now() - c0);
const r0 = performance.now();
cleanup();
const rmSecs = Math.round((performance.now() - r0) / 100) / 10;
const result = {
  scenario: 'queue-10m-memory',
  count: COUNT,
  size: SIZE,
  window: WINDOW,
  connections: CONNECTIONS,
  cpus: availableParallelism(),
  atStart,
  milestones,
  publishSecs: Math.round(publishSecs * 10) / 10,
  publishMsgPerSec: Math.round(pub.acked / publishSecs),
  acked: pub.acked,
  nacked: pub.nacked,
  depthAfterPublish,
  dataDirGB: Math.round(diskBytes / 1e7) / 100,
  afterPublish,
  peakHeapUsedMB: mb(peakHeap),
  peakRssMB: mb(peakRss),
  heapTargetMB: 128,
  heapUnderTarget: afterPublish.heapUsedMB < 128 && mb(peakHeap) < 128,
  brokerEventLoopDelayMs: { p50: Math.round(loop.percentile(50) / 1e4) / 100, p99: Math.round(loop.percentile(99) / 1e4) / 100, max: Math.round(loop.max / 1e4) / 100 },
  consume: { count: con.count, secs: Math.round(con.secs * 100) / 100, msgPerSec: Math.round(con.count / con.secs), minSeq: con.minSeq, maxSeq: con.maxSeq, outOfOrder: con.outOfOrder, redelivered: con.redelivered },
  depthAfterConsume,
  afterConsume,
  closeMs,
  rmSecs,
};
console.log(JSON.stringify(result));
process.exit(0);
