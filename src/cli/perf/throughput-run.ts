/**
 * The throughput mode of `sluice perf`: declare the topology on a control connection, start
 * every consumer and then every producer (in this thread or spread over worker threads),
 * print one line per interval, stop at --duration (or when --count is through), and print the
 * summary. End-to-end throughput is messages consumed during the run / its length; latency is
 * consume time − the send time carried in each body.
 */
import { parseAmqpUri } from './amqp-uri.js';
import { LocalAgent, WorkerAgent, type AgentHandle } from './agent-handle.js';
import { nowMs } from './amqp-wire.js';
import type { AgentPlan } from './perf-agent.js';
import { PerfConnection } from './perf-connection.js';
import type { PerfOptions } from './perf-options.js';
import { StatsTotals } from './perf-stats.js';
import { declareTopology, deleteTopology, planTopology } from './topology.js';
import { describeParams, formatInterval, formatSummary, summaryJson, type RunSummary } from './report.js';

function plans(o: PerfOptions, topo: ReturnType<typeof planTopology>): AgentPlan[] {
  const threads = Math.max(1, o.workers);
  const out: AgentPlan[] = Array.from({ length: threads }, () => ({
    uri: o.uri,
    producers: [],
    consumers: [],
    publisher: { size: o.size, rate: o.rate, persistent: o.persistent, confirm: o.confirm, count: o.count },
    consumer: { autoack: o.autoack, prefetch: o.prefetch, multiAck: o.multiAck },
  }));
  // One round-robin over consumers then producers, so a producer and "its" consumer land on
  // different threads when there are two or more.
  topo.consumers.forEach((queue, index) => out[index % threads]!.consumers.push({ index, queue }));
  topo.producers.forEach((spec, index) => out[(topo.consumers.length + index) % threads]!.producers.push({ index, spec }));
  return out.filter((p) => p.producers.length + p.consumers.length > 0);
}

export async function runThroughput(o: PerfOptions): Promise<number> {
  const log = o.json ? process.stderr : process.stdout;
  const uri = parseAmqpUri(o.uri);
  const topo = planTopology(o);
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const onError = (e: Error): void => {
    if (failure !== null) return;
    failure = e;
    process.stderr.write(`sluice perf: ${e.message}\n`);
    wake?.();
  };
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(resolve, Math.max(0, ms));
      wake = () => {
        clearTimeout(t);
        resolve();
      };
    });

  const control = await PerfConnection.connect(uri, { name: 'perf control' });
  control.onError = onError;
  const broker = control.serverName;
  await control.openChannel(1);
  if (o.declare) await declareTopology(control, 1, o, topo);
  log.write(`sluice perf: ${broker} at ${uri.host}:${uri.port}; ${describeParams(o)}\n`);

  const handles: AgentHandle[] = plans(o, topo).map((p) => (o.workers > 0 ? new WorkerAgent(p, onError) : new LocalAgent(p, onError)));
  const totals = new StatsTotals();
  let t0 = nowMs();
  let tEnd = t0;
  let expected = 0;
  let producersFinishedAt = 0;
  if (o.count > 0) {
    expected = o.producers > 0 ? topo.copiesConsumed.reduce((a, c) => a + c * o.count, 0) : o.count;
  }
  try {
    await Promise.all(handles.map((h) => h.setup()));
    t0 = nowMs();
    for (const h of handles) h.start();
    // The warm-up runs the same load and reports it, but its figures go to a throwaway total;
    // the measured run starts where it ends.
    let warm = o.warmup > 0;
    let stopAt = t0 + (warm ? o.warmup : o.duration > 0 ? o.duration : o.timeout) * 1000;
    let last = t0;
    let next = t0 + o.intervalMs;
    while (failure === null) {
      await sleep(Math.min(next, stopAt) - nowMs());
      const now = nowMs();
      if (failure !== null) break;
      if (now >= stopAt) {
        if (!warm) break;
        await Promise.all(handles.map((h) => h.take()));
        warm = false;
        t0 = last = nowMs();
        next = t0 + o.intervalMs;
        stopAt = t0 + o.duration * 1000;
        continue;
      }
      if (now < next) continue;
      const takes = await Promise.all(handles.map((h) => h.take()));
      const sum = (warm ? new StatsTotals() : totals).add(takes.map((t) => t.stats));
      log.write(formatInterval(now - t0, now - last, sum, takes.reduce((a, t) => a + t.outstanding, 0), warm) + '\n');
      last = now;
      next += o.intervalMs;
      if (o.count > 0 && o.duration === 0) {
        const producersDone = takes.every((t) => t.producersFinished);
        if (producersDone) producersFinishedAt = Math.max(...takes.map((t) => t.producersFinishedAt));
        const consumersDone = o.consumers === 0 || totals.consumed >= expected;
        if (producersDone && consumersDone) break;
      }
    }
    for (const h of handles) h.stop();
    tEnd = nowMs();
    const takes = await Promise.all(handles.map((h) => h.take()));
    totals.add(takes.map((t) => t.stats));
    // A --count run ends at its last event, not at the tick that noticed it.
    if (o.count > 0 && o.duration === 0 && failure === null) {
      const last = Math.max(o.consumers > 0 ? totals.lastConsumeAt : 0, o.producers > 0 ? producersFinishedAt : 0);
      if (last > t0) tEnd = last;
    }
  } catch (e) {
    onError(e instanceof Error ? e : new Error(String(e)));
  } finally {
    await Promise.all(handles.map((h) => h.close().catch(() => {})));
    if (o.cleanup && control.failed === null) {
      try {
        await deleteTopology(control, 1, o, topo);
      } catch (e) {
        process.stderr.write(`sluice perf: cleanup failed: ${(e as Error).message}\n`);
      }
    }
    await control.close();
  }
  const summary: RunSummary = { broker, elapsedMs: tEnd - t0, totals, error: failure === null ? null : (failure as Error).message };
  log.write(formatSummary(summary) + '\n');
  if (o.json) process.stdout.write(JSON.stringify(summaryJson(o, summary)) + '\n');
  return failure === null ? 0 : 1;
}
