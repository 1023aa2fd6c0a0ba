/**
 * `sluice perf` (the load generator behind `npm run bench`) against a real broker: the counts
 * in its JSON summary must match what went through, in each mode the benchmark uses.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import amqp from 'amqplib';
import { removeDir, startTestBroker } from '../helpers/test-broker.js';

const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.js');

interface Summary {
  mode: string;
  published: number;
  confirmed: number;
  nacked: number;
  consumed: number;
  latencyMs: { samples: number; p50: number; p99: number; max: number };
  error: string | null;
  [k: string]: unknown;
}

function perf(args: string[]): Promise<Summary> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'perf', '--json', ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`sluice perf failed: ${err.message}\n${stderr}`));
      const line = stdout.trim().split('\n').pop()!;
      resolve(JSON.parse(line) as Summary);
    });
  });
}

describe('sluice perf', () => {
  let broker: Awaited<ReturnType<typeof startTestBroker>>;
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await broker.close();
    removeDir(broker.dataDir);
  });

  test('persistent messages with confirms and manual multi-acks: every message published, confirmed and consumed once', async () => {
    const s = await perf(['--uri', broker.amqpUrl, '--count', '5000', '--persistent', '--confirm', '200', '--prefetch', '200', '--multi-ack', '10', '--size', '1024', '--queue-prefix', 'perf-t1-']);
    assert.equal(s.error, null);
    assert.equal(s.published, 5000);
    assert.equal(s.confirmed, 5000);
    assert.equal(s.nacked, 0);
    assert.equal(s.consumed, 5000);
    assert.equal(s.latencyMs.samples, 5000);
    assert.ok(s.latencyMs.p50 > 0 && s.latencyMs.p50 <= s.latencyMs.p99 && s.latencyMs.p99 <= s.latencyMs.max);
    // The queue is left empty: nothing consumed twice, nothing left behind.
    const c = await amqp.connect(broker.amqpUrl);
    const ch = await c.createChannel();
    assert.equal((await ch.checkQueue('perf-t1-0')).messageCount, 0);
    await c.close();
  });

  test('fanout to several queues over worker threads: each consumer gets every message', async () => {
    const s = await perf(['--uri', broker.amqpUrl, '--count', '2000', '--exchange-type', 'fanout', '--queues', '3', '--consumers', '3', '--autoack', '--workers', '2', '--queue-prefix', 'perf-t2-']);
    assert.equal(s.error, null);
    assert.equal(s.published, 2000);
    assert.equal(s.consumed, 6000);
  });

  test('--warmup runs the load first and counts only the measured --duration', async () => {
    const s = await perf(['--uri', broker.amqpUrl, '--rate', '500', '--warmup', '1', '--duration', '1', '--persistent', '--confirm', '100', '--prefetch', '100', '--size', '256', '--queue-prefix', 'perf-t4-']);
    assert.equal(s.error, null);
    assert.equal((s.params as { warmup: number }).warmup, 1);
    assert.ok((s.elapsedS as number) >= 0.9 && (s.elapsedS as number) < 1.6, `elapsed ${String(s.elapsedS)} s`);
    // One second at 500 msg/s, not the two the producer ran for.
    assert.ok(s.published >= 350 && s.published <= 650, `published ${s.published}`);
    assert.ok(s.consumed >= 350 && s.consumed <= 650, `consumed ${s.consumed}`);
    assert.equal(s.latencyMs.samples, s.consumed);
    await assert.rejects(perf(['--uri', broker.amqpUrl, '--warmup', '1', '--count', '10']), /--warmup needs a throughput run with --duration/);
  });

  test('queue churn and connection churn report what they did', async () => {
    const q = await perf(['--uri', broker.amqpUrl, '--mode', 'queue-churn', '--count', '50']);
    assert.equal(q.error, null);
    assert.equal(q.mode, 'queue-churn');
    const c = await perf(['--uri', broker.amqpUrl, '--mode', 'connection-churn', '--count', '50']);
    assert.equal(c.error, null);
    assert.equal(c.mode, 'connection-churn');
  });
});
