/** `sluice perf` flags, parsed and checked into one options object. */
import { parseArgs } from 'node:util';

export const EXCHANGE_TYPES = ['direct', 'fanout', 'topic', 'headers'] as const;
export type ExchangeType = (typeof EXCHANGE_TYPES)[number];

export const MODES = ['throughput', 'queue-churn', 'connection-churn', 'idle-connections', 'idle-queues', 'sink-server'] as const;
export type PerfMode = (typeof MODES)[number];

export interface PerfOptions {
  mode: PerfMode;
  uri: string;
  producers: number;
  consumers: number;
  queues: number;
  exchangeType: ExchangeType;
  /** Exchange name; '' publishes through the default exchange (direct only). */
  exchange: string;
  queuePrefix: string;
  size: number;
  rate: number;
  persistent: boolean;
  /** Durable queues and exchange (implied by --persistent). */
  durable: boolean;
  confirm: number;
  prefetch: number;
  multiAck: number;
  autoack: boolean;
  /** Seconds; 0 when --count ends the run. */
  duration: number;
  /** Seconds of load before the measured --duration starts; nothing in them is counted. */
  warmup: number;
  /** Messages per producer (throughput), or queues / connections for the other modes. */
  count: number;
  json: boolean;
  workers: number;
  declare: boolean;
  cleanup: boolean;
  intervalMs: number;
  timeout: number;
  label: string;
  /** Sink server: address to listen on. */
  host: string;
  port: number;
}

export const PERF_HELP = `Usage: sluice perf [options]           load generator (one JSON line with --json)
       sluice perf --sink-server [--port P] [--size N]   a sink broker, to measure this tool

Connection and topology:
  --uri URI              amqp://guest:guest@127.0.0.1:5672
  --producers N          1; each producer and each consumer has its own connection
  --consumers N          1
  --queues N             1; queues are PREFIX0..PREFIX(N-1), producer i publishes to queue
                         i mod N and consumer i consumes from queue i mod N (fanout: to all)
  --exchange-type T      direct|fanout|topic|headers (default direct), exchange perf-T
  --exchange NAME        exchange name; '' = the default exchange (direct only)
  --queue-prefix P       perf-q-
  --durable              durable queues and exchange (implied by --persistent)
  --predeclared          do not declare anything (alias --no-declare)
  --cleanup              delete the queues and exchange at the end (idle-queues: the queues)
Messages:
  --size BYTES           16 (the first 8 carry the send time)
  --rate N               msg/s per producer, 0 = as fast as possible (default)
  --persistent           delivery-mode 2
  --confirm WINDOW       publisher confirms, at most WINDOW unconfirmed per producer
Consumers:
  --autoack              no-ack consume
  --prefetch N           basic.qos prefetch-count (default 0: none sent)
  --multi-ack N          ack every N deliveries with multiple=true (default 1)
Run:
  --duration S           seconds (default 10 unless --count)
  --warmup S             run the same load S seconds first and count none of it (default 0;
                         with --duration only), so JIT warm-up and first-run effects are
                         not measured
  --count N              messages per producer (consume-only: messages in all); with
                         --mode: queues or connections
  --timeout S            give up a --count run after S seconds (default 600)
  --workers N            spread producers and consumers over N worker threads (0: main)
  --interval MS          report interval (default 1000)
  --json                 summary as one JSON line on stdout; per-interval lines on stderr
  --label TEXT           copied into the JSON summary
  --mode M               throughput (default), queue-churn (declare, bind, publish, get,
                         delete COUNT queues), connection-churn (open+close COUNT
                         connections), idle-connections / idle-queues (open COUNT and hold
                         them until SIGTERM, SIGINT or stdin closes)
Sink server (measures this tool without a broker):
  --sink-server          accept AMQP, discard publishes (confirming them), and for each
                         basic.consume send deliveries of --size bytes as fast as the socket
                         takes them (within the prefetch)
  --host H --port P      127.0.0.1, 5673 (0 picks a free port, printed)
`;

function int(name: string, v: string | undefined, def: number, min = 0): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

export function parsePerfOptions(argv: string[]): PerfOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      uri: { type: 'string' },
      producers: { type: 'string' },
      consumers: { type: 'string' },
      queues: { type: 'string' },
      'exchange-type': { type: 'string' },
      exchange: { type: 'string' },
      'queue-prefix': { type: 'string' },
      durable: { type: 'boolean' },
      predeclared: { type: 'boolean' },
      'no-declare': { type: 'boolean' },
      cleanup: { type: 'boolean' },
      size: { type: 'string' },
      rate: { type: 'string' },
      persistent: { type: 'boolean' },
      confirm: { type: 'string' },
      autoack: { type: 'boolean' },
      prefetch: { type: 'string' },
      'multi-ack': { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      count: { type: 'string' },
      timeout: { type: 'string' },
      workers: { type: 'string' },
      interval: { type: 'string' },
      json: { type: 'boolean' },
      label: { type: 'string' },
      mode: { type: 'string' },
      'sink-server': { type: 'boolean' },
      host: { type: 'string' },
      port: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const mode = (values['sink-server'] ? 'sink-server' : values.mode ?? 'throughput') as PerfMode;
  if (!MODES.includes(mode)) throw new Error(`--mode must be one of ${MODES.join(', ')}`);
  const exchangeType = (values['exchange-type'] ?? 'direct') as ExchangeType;
  if (!EXCHANGE_TYPES.includes(exchangeType)) throw new Error(`--exchange-type must be one of ${EXCHANGE_TYPES.join(', ')}`);
  const exchange = values.exchange ?? `perf-${exchangeType}`;
  if (exchange === '' && exchangeType !== 'direct') throw new Error(`the default exchange ('') is a direct exchange; it cannot be ${exchangeType}`);
  const count = int('count', values.count, 0);
  const persistent = values.persistent ?? false;
  const autoack = values.autoack ?? false;
  const prefetch = int('prefetch', values.prefetch, 0);
  const multiAck = int('multi-ack', values['multi-ack'], 1, 1);
  if (!autoack && prefetch > 0 && multiAck > prefetch) {
    throw new Error(`--multi-ack ${multiAck} > --prefetch ${prefetch}: the consumer would stall waiting for deliveries it never acks`);
  }
  const size = int('size', values.size, 16);
  const o: PerfOptions = {
    mode,
    uri: values.uri ?? 'amqp://guest:guest@127.0.0.1:5672',
    producers: int('producers', values.producers, 1),
    consumers: int('consumers', values.consumers, 1),
    queues: int('queues', values.queues, 1, 1),
    exchangeType,
    exchange,
    queuePrefix: values['queue-prefix'] ?? 'perf-q-',
    size,
    rate: int('rate', values.rate, 0),
    persistent,
    durable: (values.durable ?? false) || persistent,
    confirm: int('confirm', values.confirm, 0),
    prefetch,
    multiAck,
    autoack,
    duration: int('duration', values.duration, count > 0 || mode !== 'throughput' ? 0 : 10),
    warmup: int('warmup', values.warmup, 0),
    count,
    json: values.json ?? false,
    workers: int('workers', values.workers, 0),
    declare: !(values.predeclared || values['no-declare']),
    cleanup: values.cleanup ?? false,
    intervalMs: int('interval', values.interval, 1000, 10),
    timeout: int('timeout', values.timeout, 600, 1),
    label: values.label ?? '',
    host: values.host ?? '127.0.0.1',
    port: int('port', values.port, 5673),
  };
  if (o.warmup > 0 && (mode !== 'throughput' || o.duration === 0)) throw new Error('--warmup needs a throughput run with --duration');
  if (mode === 'throughput' && o.producers === 0 && o.consumers === 0) throw new Error('nothing to do: --producers 0 and --consumers 0');
  if (mode !== 'throughput' && mode !== 'sink-server' && o.count === 0) o.count = 1000;
  return o;
}
