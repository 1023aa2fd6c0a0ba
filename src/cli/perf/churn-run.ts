/**
 * Churn modes of `sluice perf`, one request at a time on one client (a latency-bound rate,
 * as an application creating work queues on demand sees it):
 *
 *   queue-churn       per queue: queue.declare, queue.bind to amq.direct (key = name),
 *                     basic.publish of one --size message, basic.get (no-ack; retried on
 *                     get-empty), queue.delete. Reports queues/s.
 *   connection-churn  per connection: TCP connect, AMQP handshake, connection.close and
 *                     close-ok. Reports connections/s.
 */
import { parseAmqpUri } from './amqp-uri.js';
import { nowMs } from './amqp-wire.js';
import { PerfConnection } from './perf-connection.js';
import type { PerfOptions } from './perf-options.js';
import { fmtInt } from './report.js';

const GET_RETRIES = 1000;

function finish(o: PerfOptions, mode: string, unit: string, done: number, t0: number, extra: Record<string, unknown>, error: string | null): number {
  const secs = (nowMs() - t0) / 1000;
  const rate = done / secs;
  const log = o.json ? process.stderr : process.stdout;
  log.write(`summary: ${mode}: ${fmtInt(done)} in ${secs.toFixed(2)} s = ${fmtInt(rate)} ${unit}/s${error !== null ? ` — FAILED: ${error}` : ''}\n`);
  if (o.json) process.stdout.write(JSON.stringify({ tool: 'sluice perf', mode, label: o.label, count: o.count, done, elapsedS: secs, rate: Math.round(rate * 10) / 10, unit: `${unit}/s`, ...extra, error }) + '\n');
  return error === null ? 0 : 1;
}

export async function runQueueChurn(o: PerfOptions): Promise<number> {
  const conn = await PerfConnection.connect(parseAmqpUri(o.uri), { name: 'perf queue churn' });
  let failure: string | null = null;
  conn.onError = (e) => (failure ??= e.message);
  await conn.openChannel(1);
  const broker = conn.serverName;
  let emptyGets = 0;
  let done = 0;
  const t0 = nowMs();
  try {
    for (let i = 0; i < o.count; i++) {
      const q = `${o.queuePrefix}churn-${i}`;
      await conn.queueDeclare(1, q, { durable: o.durable });
      await conn.queueBind(1, q, 'amq.direct', q);
      conn.publishOne(1, 'amq.direct', q, o.size);
      let got = false;
      for (let r = 0; r < GET_RETRIES && !got; r++) {
        got = await conn.basicGet(1, q);
        if (!got) emptyGets++;
      }
      if (!got) throw new Error(`queue ${q}: basic.get found nothing after ${GET_RETRIES} tries; the publish was lost`);
      await conn.queueDelete(1, q);
      done++;
    }
  } catch (e) {
    failure ??= (e as Error).message;
  }
  const code = finish(o, 'queue-churn', 'queues', done, t0, { broker, emptyGets, durable: o.durable, size: o.size }, failure);
  await conn.close();
  return code;
}

export async function runConnectionChurn(o: PerfOptions): Promise<number> {
  const uri = parseAmqpUri(o.uri);
  let failure: string | null = null;
  let done = 0;
  let broker = '';
  const t0 = nowMs();
  try {
    for (let i = 0; i < o.count; i++) {
      const c = await PerfConnection.connect(uri, { name: `perf churn ${i}` });
      broker = c.serverName;
      await c.close();
      done++;
    }
  } catch (e) {
    failure = (e as Error).message;
  }
  return finish(o, 'connection-churn', 'connections', done, t0, { broker }, failure);
}
