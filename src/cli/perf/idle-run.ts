/**
 * Idle modes of `sluice perf`, for measuring a broker's footprint from outside:
 *
 *   idle-connections  open COUNT connections with one channel each
 *   idle-queues       declare COUNT queues PREFIXidle-0… on one connection (8 channels)
 *
 * then print {"ready":true,…} on stdout and hold until SIGTERM or SIGINT (or --duration
 * seconds if given), then close the connections (and delete the queues with --cleanup) and
 * print the summary line.
 */
import { parseAmqpUri } from './amqp-uri.js';
import { nowMs } from './amqp-wire.js';
import { inBatches } from './perf-agent.js';
import { PerfConnection } from './perf-connection.js';
import type { PerfOptions } from './perf-options.js';
import { fmtInt } from './report.js';

const PARALLEL = 32;
const QUEUE_CHANNELS = 8;

function holdUntilSignal(seconds: number): Promise<string> {
  return new Promise((resolve) => {
    const done = (why: string): void => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      clearTimeout(timer);
      resolve(why);
    };
    const onTerm = (): void => done('SIGTERM');
    const onInt = (): void => done('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    const timer = seconds > 0 ? setTimeout(() => done('duration'), seconds * 1000) : setInterval(() => {}, 1 << 30);
  });
}

export async function runIdle(o: PerfOptions): Promise<number> {
  const uri = parseAmqpUri(o.uri);
  const log = o.json ? process.stderr : process.stdout;
  const conns: PerfConnection[] = [];
  let failure: string | null = null;
  const onError = (e: Error): void => {
    failure ??= e.message;
  };
  const t0 = nowMs();
  const queues = o.mode === 'idle-queues' ? Array.from({ length: o.count }, (_, i) => `${o.queuePrefix}idle-${i}`) : [];
  try {
    if (o.mode === 'idle-connections') {
      await inBatches(Array.from({ length: o.count }, (_, i) => i), PARALLEL, async (i) => {
        const c = await PerfConnection.connect(uri, { name: `perf idle ${i}` });
        c.onError = onError;
        conns.push(c);
        await c.openChannel(1);
      });
    } else {
      const c = await PerfConnection.connect(uri, { name: 'perf idle queues' });
      c.onError = onError;
      conns.push(c);
      const chans = Array.from({ length: QUEUE_CHANNELS }, (_, i) => i + 1);
      for (const ch of chans) await c.openChannel(ch);
      await Promise.all(chans.map(async (ch) => {
        for (let i = ch - 1; i < queues.length; i += QUEUE_CHANNELS) await c.queueDeclare(ch, queues[i]!, { durable: o.durable });
      }));
    }
  } catch (e) {
    failure ??= (e as Error).message;
  }
  const openS = (nowMs() - t0) / 1000;
  const what = o.mode === 'idle-connections' ? 'connections' : 'queues';
  if (failure === null) {
    const ready = { ready: true, mode: o.mode, count: o.count, openS, broker: conns[0]?.serverName ?? '', pid: process.pid };
    if (o.json) process.stdout.write(JSON.stringify(ready) + '\n');
    log.write(`sluice perf: ${fmtInt(o.count)} idle ${what} open after ${openS.toFixed(2)} s; holding until SIGTERM/SIGINT${o.duration > 0 ? ` or ${o.duration} s` : ''}\n`);
    await holdUntilSignal(o.duration);
  }
  const t1 = nowMs();
  if (o.cleanup && queues.length > 0 && conns[0] !== undefined && conns[0].failed === null) {
    const c = conns[0];
    try {
      await Promise.all(Array.from({ length: QUEUE_CHANNELS }, (_, k) => k + 1).map(async (ch) => {
        for (let i = ch - 1; i < queues.length; i += QUEUE_CHANNELS) await c.queueDelete(ch, queues[i]!);
      }));
    } catch (e) {
      failure ??= `deleting queues: ${(e as Error).message}`;
    }
  }
  await inBatches(conns, PARALLEL * 4, (c) => c.close(3000));
  const closeS = (nowMs() - t1) / 1000;
  log.write(`summary: ${o.mode}: ${fmtInt(o.count)} ${what}, opened in ${openS.toFixed(2)} s, released in ${closeS.toFixed(2)} s${failure !== null ? ` — FAILED: ${failure}` : ''}\n`);
  if (o.json) process.stdout.write(JSON.stringify({ tool: 'sluice perf', mode: o.mode, label: o.label, count: o.count, openS, closeS, error: failure }) + '\n');
  return failure === null ? 0 : 1;
}
