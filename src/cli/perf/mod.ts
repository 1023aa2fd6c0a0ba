/**
 * `sluice perf`: a load generator for any AMQP 0-9-1 broker (in the manner of RabbitMQ's
 * PerfTest and lavinmqperf), with a sink server to measure its own ceiling.
 * src/cli/main.ts delegates the whole subcommand here.
 */
import { runConnectionChurn, runQueueChurn } from './churn-run.js';
import { runIdle } from './idle-run.js';
import { PERF_HELP, parsePerfOptions } from './perf-options.js';
import { SinkServer } from './sink-server.js';
import { runThroughput } from './throughput-run.js';

export { PERF_HELP } from './perf-options.js';

export async function runPerf(argv: string[]): Promise<number> {
  let o;
  try {
    o = parsePerfOptions(argv);
  } catch (e) {
    process.stderr.write(`sluice perf: ${(e as Error).message}\n\n${PERF_HELP}`);
    return 2;
  }
  if (o === 'help') {
    process.stdout.write(PERF_HELP);
    return 0;
  }
  switch (o.mode) {
    case 'throughput':
      return runThroughput(o);
    case 'queue-churn':
      return runQueueChurn(o);
    case 'connection-churn':
      return runConnectionChurn(o);
    case 'idle-connections':
    case 'idle-queues':
      return runIdle(o);
    case 'sink-server': {
      const sink = new SinkServer({ host: o.host, port: o.port, size: o.size });
      const port = await sink.listen();
      process.stdout.write(`sluice perf sink: listening on ${o.host}:${port}, deliveries of ${o.size} B\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      void sink.close(); // connections still open are cut by the exit
      return 0;
    }
  }
}
