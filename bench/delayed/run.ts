/**
 * Delayed messages (x-delayed-message exchange) at scale and across kill -9. Not part of CI.
 *
 *   node dist/bench/delayed/run.js [scale|kill|kill-idle|all] [--count N] [--kill-count N]
 *        [--runs N] [--window N] [--connections N] [--prefetch N] [--order random|due] [--dump FILE]
 *        [--due-header delay|at] [--publisher-nice N]
 *
 * scale      the broker as a child process; `count` (1,000,000) persistent messages with
 *            confirms, each due at T0 + uniform[10 s, 70 s]; one consumer records lateness =
 *            receive time − dueAt and that each seq arrives once; the broker's RSS from
 *            /proc/<pid>/status every 250 ms.
 * kill       `kill-count` (200,000) messages due at T0 + uniform[10 s, 40 s], a consumer acking
 *            each message; SIGKILL at T0 + 25 s, restart on the same data dir, reconnect; counts
 *            lost / fired twice / redelivered. `runs` times (3).
 * kill-idle  the same with no consumer before the kill: nothing has been delivered, so after
 *            the restart any seq that arrives twice was fired twice, unambiguously.
 * all        scale, then kill and kill-idle.
 * --order due publishes in due order instead of a random one (the schedule log then holds
 * entries in firing order, the easy case for reading them back); --dump writes a CSV of every
 * 10th message (due, sent, confirm time, lateness).
 *
 * The publisher runs in a worker thread (publisher.ts) so that its CPU work does not delay the
 * consumer's receive timestamps. Prints human lines and one JSON line per scenario.
 */
import amqp from 'amqplib';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { mib, procCpuSeconds, procStatusBytes, RssSampler, sleep, spawnBroker, type BrokerChild } from './broker-child.js';
import type { PublisherInput, PublisherMessage } from './publisher.js';
import { Tally, TallyConsumer } from './tally.js';

const EXCHANGE = 'delays';
const QUEUE = 'delayed-bench';
const ROUTING_KEY = 'k';
const BODY_SIZE = 48;

const { values, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    count: { type: 'string' },
    'kill-count': { type: 'string' },
    runs: { type: 'string' },
    window: { type: 'string' },
    connections: { type: 'string' },
    prefetch: { type: 'string' },
    dump: { type: 'string' },
    order: { type: 'string' },
    'due-header': { type: 'string' },
    'publisher-nice': { type: 'string' },
  },
});
const mode = positionals[0] ?? 'all';
const COUNT = Number(values.count ?? 1_000_000);
const KILL_COUNT = Number(values['kill-count'] ?? 200_000);
const RUNS = Number(values.runs ?? 3);
const WINDOW = Number(values.window ?? 5000);
/**
 * 'delay' (default): x-delay = dueAt − send time, so the broker's due time also holds the time
 * the publish spent queued before the broker read it (up to the confirm latency), and lateness
 * counts it. 'at': x-deliver-at = dueAt, the exact due time, so lateness is the broker's own.
 */
const DUE_HEADER = values['due-header'] === 'at' ? 'at' : 'delay';
/**
 * Nice value of the publisher thread (default 0). Publishing a million messages as fast as
 * confirms allow keeps one of the two cores busy in the bench itself while messages fall due:
 * a positive value lets the broker and the consumer go first, so lateness is less about the
 * load generator competing for the same cores.
 */
const PUBLISHER_NICE = Number(values['publisher-nice'] ?? 0);
const CONNECTIONS = Number(values.connections ?? 2);
const PREFETCH = Number(values.prefetch ?? 1000);
/** 'random' (default): seqs are published in an order unrelated to their due times; 'due': in due order. */
const ORDER = values.order ?? 'random';

function log(s: string): void {
  process.stdout.write(`[${new Date().toISOString().slice(11, 23)}] ${s}\n`);
}

async function declare(url: string): Promise<void> {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.assertExchange(EXCHANGE, 'x-delayed-message', { durable: true, arguments: { 'x-delayed-type': 'direct' } });
  await ch.assertQueue(QUEUE, { durable: true });
  await ch.bindQueue(QUEUE, EXCHANGE, ROUTING_KEY);
  await conn.close();
}

async function queueDepth(url: string): Promise<number> {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const q = await ch.checkQueue(QUEUE);
  await conn.close();
  return q.messageCount;
}

interface Published {
  done: Promise<Extract<PublisherMessage, { kind: 'done' }>>;
  confirmed: Uint8Array;
  sentAt: Float64Array;
  confirmedAt: Float64Array;
  dueAt: Float64Array;
  progress: { sent: number; confirmed: number };
}

/** Chooses every message's due time, then publishes them all from a worker thread. */
function publish(url: string, count: number, t0: number, minMs: number, maxMs: number): Published {
  const dueBuf = new SharedArrayBuffer(count * 8);
  const confBuf = new SharedArrayBuffer(count);
  const due = new Float64Array(dueBuf);
  for (let i = 0; i < count; i++) due[i] = t0 + minMs + Math.random() * (maxMs - minMs);
  if (ORDER === 'due') due.sort();
  const sentBuf = new SharedArrayBuffer(count * 8);
  const confAtBuf = new SharedArrayBuffer(count * 8);
  const input: PublisherInput = {
    url,
    exchange: EXCHANGE,
    routingKey: ROUTING_KEY,
    count,
    dueAt: dueBuf,
    confirmed: confBuf,
    sentAt: sentBuf,
    confirmedAt: confAtBuf,
    window: WINDOW,
    dueHeader: DUE_HEADER,
    nice: PUBLISHER_NICE,
    connections: CONNECTIONS,
    bodySize: BODY_SIZE,
  };
  const worker = new Worker(new URL('./publisher.js', import.meta.url), { workerData: input });
  const progress = { sent: 0, confirmed: 0 };
  const done = new Promise<Extract<PublisherMessage, { kind: 'done' }>>((resolve, reject) => {
    worker.on('message', (m: PublisherMessage) => {
      if (m.kind === 'progress') Object.assign(progress, { sent: m.sent, confirmed: m.confirmed });
      else if (m.kind === 'done') {
        Object.assign(progress, { sent: m.sent, confirmed: m.acked + m.nacked });
        resolve(m);
        void worker.terminate();
      } else reject(new Error(`publisher: ${m.message}`));
    });
    worker.on('error', reject);
  });
  return { done, confirmed: new Uint8Array(confBuf), sentAt: new Float64Array(sentBuf), confirmedAt: new Float64Array(confAtBuf), dueAt: due, progress };
}

async function stopBroker(b: BrokerChild): Promise<number | string | null> {
  b.child.kill('SIGTERM');
  return b.exited;
}

// ---------------------------------------------------------------- (a) scale and lateness

async function scale(count: number): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-delayed-'));
  const broker = await spawnBroker(dir);
  log(`scale: broker pid ${broker.pid} on ${broker.url}, data ${dir}, started in ${broker.startMs.toFixed(0)} ms`);
  await declare(broker.url);
  const tally = new Tally(count);
  const consumer = await TallyConsumer.start(broker.url, QUEUE, tally, PREFETCH, Math.max(1, PREFETCH >> 1));
  await sleep(1000);
  const rssBefore = procStatusBytes(broker.pid);
  const cpuBefore = procCpuSeconds(broker.pid);
  const t0 = Date.now();
  const sampler = new RssSampler(broker.pid, t0);
  // The bench's own event loop: a stall here would show up as lateness that is not the broker's.
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const pub = publish(broker.url, count, t0, 10_000, 70_000);
  let published: Extract<PublisherMessage, { kind: 'done' }> | null = null;
  void pub.done.then((d) => (published = d));
  const report = setInterval(() => {
    log(`  t=${((Date.now() - t0) / 1000).toFixed(0)}s sent ${pub.progress.sent} confirmed ${pub.progress.confirmed} received ${tally.received} (+${tally.deliveriesTotal - tally.received} repeats) rss ${mib(sampler.last)} MiB`);
  }, 5000);
  const pubDone = await pub.done;
  const publishSecs = (pubDone.finishedAt - pubDone.startedAt) / 1000;
  log(`scale: published ${pubDone.sent} in ${publishSecs.toFixed(1)} s (${Math.round(pubDone.sent / publishSecs)} msg/s), acked ${pubDone.acked}, nacked ${pubDone.nacked}, ${pubDone.pastDue} sent at/after their due time; confirm latency p50 ${pubDone.confirmMs.p50.toFixed(1)} p99 ${pubDone.confirmMs.p99.toFixed(1)} max ${pubDone.confirmMs.max.toFixed(1)} ms`);
  const rssAfterPublish = procStatusBytes(broker.pid);
  // Everything falls due by T0 + 70 s; wait for all of it, then 3 s more for late repeats.
  const lastDue = t0 + 70_000;
  for (;;) {
    await sleep(250);
    const now = Date.now();
    const idle = now - tally.lastDeliveryAt;
    if (tally.received >= pubDone.acked && now > lastDue && idle > 3000) break;
    if (now > lastDue + 120_000 && idle > 10_000) {
      log('scale: gave up waiting (no delivery for 10 s, 2 min past the last due time)');
      break;
    }
  }
  clearInterval(report);
  sampler.stop();
  loop.disable();
  const drainedAt = tally.lastDeliveryAt;
  const hwm = procStatusBytes(broker.pid, 'VmHWM');
  const brokerCpu = procCpuSeconds(broker.pid) - cpuBefore;
  const rssEnd = procStatusBytes(broker.pid);
  await consumer.close();
  const depth = await queueDepth(broker.url);
  const exit = await stopBroker(broker);
  const brokerErrors = broker.output().trim();
  rmSync(dir, { recursive: true, force: true });
  if (published === null) throw new Error('unreachable');
  const all = tally.stats((i) => tally.pastDue[i] === 0);
  const afterPub = tally.stats((i) => tally.pastDue[i] === 0 && tally.dueAt[i]! > pubDone.finishedAt);
  // Messages the broker had stored (confirmed) before they fell due: the ones it could fire on
  // time. A message sent before its due time can still reach the broker after it, when it waits
  // in the client's buffers behind the rest of the confirm window (or in TCP while publishers
  // are held by flow control).
  const stored = tally.stats((i) => tally.pastDue[i] === 0 && pub.confirmedAt[i]! > 0 && pub.confirmedAt[i]! <= tally.dueAt[i]!);
  // The broker computes its due time as (when it reads the publish) + x-delay, somewhere in
  // [sentAt, confirmedAt] + x-delay: so its own lateness lies between the lateness above and
  // this lower bound, which subtracts each message's publish → confirm time.
  const confirmMs = (i: number): number => pub.confirmedAt[i]! - pub.sentAt[i]!;
  const allLow = tally.stats((i) => tally.pastDue[i] === 0, (i, l) => l - confirmMs(i));
  const afterPubLow = tally.stats((i) => tally.pastDue[i] === 0 && tally.dueAt[i]! > pubDone.finishedAt, (i, l) => l - confirmMs(i));
  if (values.dump !== undefined) dump(values.dump, tally, pub, t0);
  const result = {
    scenario: 'delayed-scale',
    count,
    order: ORDER,
    dueHeader: DUE_HEADER,
    publisherNice: PUBLISHER_NICE,
    window: WINDOW,
    connections: CONNECTIONS,
    prefetch: PREFETCH,
    bodySize: BODY_SIZE,
    publishSecs: round1(publishSecs),
    publishMsgPerSec: Math.round(pubDone.sent / publishSecs),
    publishEndedAtSecs: round1((pubDone.finishedAt - t0) / 1000),
    acked: pubDone.acked,
    nacked: pubDone.nacked,
    sentAtOrAfterDue: pubDone.pastDue,
    confirmMs: roundAll(pubDone.confirmMs),
    rssBeforeMiB: mib(rssBefore),
    rssAfterPublishMiB: mib(rssAfterPublish),
    rssPeakMiB: mib(sampler.peak),
    rssGrowthMiB: mib(sampler.peak - rssBefore),
    vmHwmMiB: mib(hwm),
    rssEndMiB: mib(rssEnd),
    rssSamples: sampler.samples,
    rssSeries: sampler.series,
    latenessMs: all,
    latenessDueAfterPublishMs: afterPub,
    latenessConfirmedBeforeDueMs: stored,
    latenessMinusConfirmMs: allLow,
    latenessMinusConfirmDueAfterPublishMs: afterPubLow,
    brokerCpuSecs: round1(brokerCpu),
    loadAvg1m: { mean: sampler.loadMean, max: round1(sampler.loadMax) },
    benchEventLoopDelayMs: { p99: round1(loop.percentile(99) / 1e6), max: round1(loop.max / 1e6) },
    lastDeliverySecs: round1((drainedAt - t0) / 1000),
    received: tally.received,
    missing: count - tally.received,
    lost: tally.lost(pub.confirmed),
    duplicates: tally.firedTwiceSameEpoch,
    redelivered: tally.redelivered,
    malformed: tally.malformed,
    queueDepthAtEnd: depth,
    brokerExit: exit,
    brokerStderr: brokerErrors.slice(0, 2000),
  };
  log(`scale: machine load (1-min avg) mean ${result.loadAvg1m.mean} max ${result.loadAvg1m.max} on ${availableParallelism()} CPUs; broker CPU ${result.brokerCpuSecs} s; bench event loop delay p99 ${result.benchEventLoopDelayMs.p99} max ${result.benchEventLoopDelayMs.max} ms`);
  log(`scale: RSS before ${result.rssBeforeMiB} MiB, peak ${result.rssPeakMiB} MiB, growth ${result.rssGrowthMiB} MiB (target < 150), end ${result.rssEndMiB} MiB`);
  log(`scale: lateness (all ${all.n} sent before due) p50 ${all.p50} p99 ${all.p99} p99.9 ${all.p999} max ${all.max} ms (target p99 < 20)`);
  log(`scale: lateness (${stored.n} confirmed before due) p50 ${stored.p50} p99 ${stored.p99} p99.9 ${stored.p999} max ${stored.max} ms`);
  log(`scale: lateness (${afterPub.n} due after publishing ended) p50 ${afterPub.p50} p99 ${afterPub.p99} p99.9 ${afterPub.p999} max ${afterPub.max} ms`);
  log(`scale: lateness − publish→confirm time (lower bound), all: p50 ${allLow.p50} p99 ${allLow.p99} p99.9 ${allLow.p999} max ${allLow.max}; due after publishing: p50 ${afterPubLow.p50} p99 ${afterPubLow.p99} p99.9 ${afterPubLow.p999} max ${afterPubLow.max} ms`);
  log(`scale: received ${result.received}, missing ${result.missing}, lost ${result.lost}, duplicates ${result.duplicates}, redelivered ${result.redelivered}, queue depth at end ${depth}`);
  return result;
}

// ---------------------------------------------------------------- (b) kill -9 while firing

async function killRun(run: number, count: number, withConsumer: boolean): Promise<Record<string, unknown>> {
  const name = withConsumer ? 'kill' : 'kill-idle';
  const dir = mkdtempSync(join(tmpdir(), 'sluice-delayed-kill-'));
  let broker = await spawnBroker(dir);
  await declare(broker.url);
  const tally = new Tally(count);
  let consumer = withConsumer ? await TallyConsumer.start(broker.url, QUEUE, tally, PREFETCH, 1) : null;
  const t0 = Date.now();
  const minMs = 10_000;
  const maxMs = 40_000;
  const killAt = t0 + 25_000;
  const pub = publish(broker.url, count, t0, minMs, maxMs);
  const pubDone = await pub.done;
  const publishSecs = (pubDone.finishedAt - pubDone.startedAt) / 1000;
  log(`${name} #${run}: published ${pubDone.sent} in ${publishSecs.toFixed(1)} s, acked ${pubDone.acked}, nacked ${pubDone.nacked}, ${pubDone.pastDue} sent at/after due`);
  if (Date.now() > killAt) log(`${name} #${run}: WARNING publishing ended after the planned kill time`);
  await sleep(Math.max(0, killAt - Date.now()));
  const receivedBeforeKill = tally.received;
  const deliveriesBeforeKill = tally.deliveriesTotal;
  const rssAtKill = procStatusBytes(broker.pid);
  const loadAtKill = loadavg()[0]!;
  broker.child.kill('SIGKILL');
  const killedAt = Date.now();
  const exit1 = await broker.exited;
  if (consumer) await consumer.close();
  tally.epoch = 2;
  log(`${name} #${run}: SIGKILL at T0+${((killedAt - t0) / 1000).toFixed(1)} s (exit ${exit1}); ${receivedBeforeKill} received before the kill`);
  broker = await spawnBroker(dir);
  const restartedAt = Date.now();
  log(`${name} #${run}: restarted in ${broker.startMs.toFixed(0)} ms on ${broker.url}`);
  const depthAfterRestart = await queueDepth(broker.url);
  if (withConsumer) consumer = await TallyConsumer.start(broker.url, QUEUE, tally, PREFETCH, 1);
  else {
    // Let everything fall due before the first delivery, so a repeat can only be a second firing.
    await sleep(Math.max(0, t0 + maxMs + 2000 - Date.now()));
    consumer = await TallyConsumer.start(broker.url, QUEUE, tally, PREFETCH, 1);
  }
  const lastDue = t0 + maxMs;
  for (;;) {
    await sleep(250);
    const now = Date.now();
    const idle = now - tally.lastDeliveryAt;
    if (tally.received >= pubDone.acked && now > lastDue && idle > 3000) break;
    if (now > lastDue + 60_000 && idle > 10_000) {
      log(`${name} #${run}: gave up waiting (no delivery for 10 s, 1 min past the last due time)`);
      break;
    }
  }
  await consumer.close();
  const depthEnd = await queueDepth(broker.url);
  const exit2 = await stopBroker(broker);
  const brokerErrors = broker.output().trim();
  rmSync(dir, { recursive: true, force: true });
  // Lateness after the restart only means something when a consumer was waiting.
  const afterRestart = withConsumer ? tally.stats((i) => tally.pastDue[i] === 0 && tally.dueAt[i]! > restartedAt + 1000) : null;
  // For seqs delivered before the kill and again after it: how long before the kill the first
  // delivery arrived (acks of the last moments before a kill may not have been stored).
  const before: number[] = [];
  for (let i = 0; i < count; i++) if (tally.firstEpoch[i] === 1 && tally.deliveries[i]! > 1) before.push(killedAt - tally.firstAt[i]!);
  before.sort((a, b) => a - b);
  const repeatFirstDeliveryMsBeforeKill = before.length
    ? { min: Math.round(before[0]!), p50: Math.round(before[before.length >> 1]!), max: Math.round(before[before.length - 1]!) }
    : null;
  let dueBeforeKill = 0;
  const due = pub.dueAt;
  for (let i = 0; i < count; i++) if (due[i]! <= killedAt) dueBeforeKill++;
  const result = {
    scenario: `delayed-${name}`,
    run,
    count,
    dueWindowSecs: [minMs / 1000, maxMs / 1000],
    publishSecs: round1(publishSecs),
    acked: pubDone.acked,
    nacked: pubDone.nacked,
    sentAtOrAfterDue: pubDone.pastDue,
    killAtSecs: round1((killedAt - t0) / 1000),
    dueBeforeKill,
    receivedBeforeKill,
    deliveriesBeforeKill,
    rssAtKillMiB: mib(rssAtKill),
    loadAvg1mAtKill: round1(loadAtKill),
    loadAvg1mAtEnd: round1(loadavg()[0]!),
    restartMs: Math.round(broker.startMs),
    queueDepthAfterRestart: depthAfterRestart,
    received: tally.received,
    lost: tally.lost(pub.confirmed),
    firedTwice: tally.firedTwiceSameEpoch,
    redeliveredFlag: tally.redelivered,
    redeliveredFlagFirstSeen: tally.redeliveredFirstSeen,
    repeatAcrossKillNoFlag: tally.repeatAcrossKillNoFlag,
    seqsDeliveredMoreThanOnce: tally.seqsDeliveredMoreThanOnce(),
    repeatFirstDeliveryMsBeforeKill,
    malformed: tally.malformed,
    latenessDueAfterRestartMs: afterRestart,
    queueDepthAtEnd: depthEnd,
    brokerExit: exit2,
    brokerStderr: brokerErrors.slice(0, 2000),
  };
  log(
    `${name} #${run}: lost ${result.lost}, fired twice ${result.firedTwice}, redelivered (flag) ${result.redeliveredFlag}, ` +
      `repeats across the kill without the flag ${result.repeatAcrossKillNoFlag}, queue depth at end ${depthEnd}; ` +
      (afterRestart ? `lateness of ${afterRestart.n} due after restart p50 ${afterRestart.p50} p99 ${afterRestart.p99} max ${afterRestart.max} ms` : 'no consumer before the restart: lateness not measured') +
      (repeatFirstDeliveryMsBeforeKill ? `; repeats were first delivered ${repeatFirstDeliveryMsBeforeKill.min}-${repeatFirstDeliveryMsBeforeKill.max} ms before the kill` : ''),
  );
  return result;
}

/** CSV of every 10th seq: due, sent and confirmed (s after T0), lateness (ms), for plotting. */
function dump(path: string, tally: Tally, pub: Published, t0: number): void {
  const lines = ['seq,due_s,sent_s,confirm_ms,lateness_ms'];
  for (let i = 0; i < tally.count; i += 10) {
    if (tally.firstEpoch[i] === 0) continue;
    lines.push(`${i},${((tally.dueAt[i]! - t0) / 1000).toFixed(3)},${((pub.sentAt[i]! - t0) / 1000).toFixed(3)},${(pub.confirmedAt[i]! - pub.sentAt[i]!).toFixed(2)},${tally.lateness[i]!.toFixed(2)}`);
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

function roundAll(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Math.round(v * 100) / 100]));
}

const results: Record<string, unknown>[] = [];
if (mode === 'scale' || mode === 'all') results.push(await scale(COUNT));
if (mode === 'kill' || mode === 'all') for (let r = 1; r <= RUNS; r++) results.push(await killRun(r, KILL_COUNT, true));
if (mode === 'kill-idle' || mode === 'all') for (let r = 1; r <= RUNS; r++) results.push(await killRun(r, KILL_COUNT, false));
for (const r of results) console.log(JSON.stringify(r));
