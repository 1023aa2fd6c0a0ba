/**
 * The side-by-side scenarios (issue 5): what `sluice perf` runs for each, which figures become
 * table rows, which direction is better, and the target the project will chase.
 */

export type ScenarioKind = 'throughput' | 'queue-churn' | 'connection-churn' | 'idle-connections' | 'idle-queues';

/** A target on one metric: the Sluice / RabbitMQ ratio, or Sluice's own value. */
export type Target =
  | { kind: 'ratio-min'; value: number; text: string }
  | { kind: 'ratio-max'; value: number; text: string }
  | { kind: 'sluice-max'; value: number; text: string };

export interface Metric {
  key: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  targets: Target[];
}

export interface Scenario {
  id: string;
  group: number;
  title: string;
  kind: ScenarioKind;
  /** perf flags (besides --uri, --json, --label, --queue-prefix, --cleanup). */
  args: (c: ScenarioContext) => string[];
  metrics: Metric[];
}

export interface ScenarioContext {
  duration: number;
  /** Seconds of the same load before each measured throughput run (perf --warmup). */
  warmup: number;
  smoke: boolean;
}

const E2E: Metric = { key: 'consumeRate', label: 'end-to-end', unit: 'msg/s', better: 'higher', targets: [] };
const x2: Target = { kind: 'ratio-min', value: 2, text: 'Sluice ≥ 2× RabbitMQ' };
/** "On par": Sluice within 20 % of RabbitMQ, or better. */
const parHigher: Target = { kind: 'ratio-min', value: 0.8, text: 'on par (≥ 0.8×)' };
const parLower: Target = { kind: 'ratio-max', value: 1.25, text: 'on par (≤ 1.25×)' };

const dur = (c: ScenarioContext): string[] => ['--duration', String(c.duration), ...(c.warmup > 0 ? ['--warmup', String(c.warmup)] : [])];
/** Consumers of the transient scenarios: no-ack, as the earlier amqplib benchmark ran. */
const transientConsumer = ['--autoack'];
/** Consumers of the persistent scenarios: manual acks, one per message, prefetch 1000. */
const ackingConsumer = ['--prefetch', '1000', '--multi-ack', '1'];

export const SCENARIOS: Scenario[] = [
  {
    id: '1a',
    group: 1,
    title: 'transient, 16 B, 1 producer → 1 queue → 1 consumer (autoack)',
    kind: 'throughput',
    args: (c) => ['--size', '16', ...transientConsumer, ...dur(c)],
    metrics: [{ ...E2E, targets: [x2] }],
  },
  {
    id: '1b',
    group: 1,
    title: 'transient, 1 KiB, 1 → 1 → 1 (autoack)',
    kind: 'throughput',
    args: (c) => ['--size', '1024', ...transientConsumer, ...dur(c)],
    metrics: [{ ...E2E, targets: [x2] }],
  },
  {
    id: '2a',
    group: 2,
    title: 'persistent, durable queue, confirms (window 1000), manual acks (prefetch 1000), 16 B',
    kind: 'throughput',
    args: (c) => ['--size', '16', '--persistent', '--confirm', '1000', ...ackingConsumer, ...dur(c)],
    metrics: [{ ...E2E, targets: [x2] }],
  },
  {
    id: '2b',
    group: 2,
    title: 'persistent, durable queue, confirms (window 1000), manual acks (prefetch 1000), 1 KiB',
    kind: 'throughput',
    args: (c) => ['--size', '1024', '--persistent', '--confirm', '1000', ...ackingConsumer, ...dur(c)],
    metrics: [{ ...E2E, targets: [x2] }],
  },
  {
    id: '3',
    group: 3,
    title: 'latency at 2,000 msg/s, 1 KiB, persistent, confirms (window 1000), manual acks',
    kind: 'throughput',
    args: (c) => ['--size', '1024', '--rate', '2000', '--persistent', '--confirm', '1000', ...ackingConsumer, ...dur(c)],
    metrics: [
      { key: 'p50', label: 'latency p50', unit: 'ms', better: 'lower', targets: [] },
      { key: 'p99', label: 'latency p99', unit: 'ms', better: 'lower', targets: [{ kind: 'ratio-max', value: 0.5, text: 'Sluice ≤ ½ RabbitMQ' }] },
      { key: 'p999', label: 'latency p99.9', unit: 'ms', better: 'lower', targets: [{ kind: 'sluice-max', value: 10, text: 'Sluice < 10 ms' }] },
      { ...E2E, label: 'end-to-end (check: 2,000)' },
    ],
  },
  {
    id: '4',
    group: 4,
    title: 'fanout, 1 producer → 4 queues → 4 consumers, 1 KiB, transient (autoack)',
    kind: 'throughput',
    args: (c) => ['--exchange-type', 'fanout', '--queues', '4', '--consumers', '4', '--size', '1024', ...transientConsumer, ...dur(c)],
    metrics: [{ ...E2E, label: 'end-to-end (all 4 consumers)', targets: [x2] }],
  },
  {
    id: '5',
    group: 5,
    title: '10 producers → 10 queues → 10 consumers, 1 KiB, transient (autoack)',
    kind: 'throughput',
    args: (c) => ['--producers', '10', '--consumers', '10', '--queues', '10', '--size', '1024', ...transientConsumer, ...dur(c)],
    metrics: [{ ...E2E, targets: [x2] }],
  },
  {
    id: '6',
    group: 6,
    title: '1 MiB, persistent, confirms (window 10), manual acks (prefetch 10), 1 → 1 → 1',
    kind: 'throughput',
    args: (c) => ['--size', String(1024 * 1024), '--persistent', '--confirm', '10', '--prefetch', '10', ...dur(c)],
    metrics: [{ ...E2E, targets: [parHigher] }],
  },
  {
    id: '7a',
    group: 7,
    title: 'queue churn: declare, bind, publish 16 B, basic.get, delete; one at a time',
    kind: 'queue-churn',
    args: (c) => ['--mode', 'queue-churn', '--count', c.smoke ? '100' : '1000', '--size', '16'],
    metrics: [{ key: 'rate', label: 'queues', unit: 'queues/s', better: 'higher', targets: [parHigher] }],
  },
  {
    id: '7b',
    group: 7,
    title: 'connection churn: open (TCP + handshake) and close; one at a time',
    kind: 'connection-churn',
    args: (c) => ['--mode', 'connection-churn', '--count', c.smoke ? '100' : '1000'],
    metrics: [{ key: 'rate', label: 'connections', unit: 'conn/s', better: 'higher', targets: [parHigher] }],
  },
  {
    id: '8a',
    group: 8,
    title: 'idle footprint: 1,000 connections with one channel each',
    kind: 'idle-connections',
    args: (c) => ['--mode', 'idle-connections', '--count', c.smoke ? '100' : '1000'],
    metrics: [
      { key: 'rssMiB', label: 'broker RSS', unit: 'MiB', better: 'lower', targets: [parLower] },
      { key: 'perItemKiB', label: 'RSS growth per connection', unit: 'KiB', better: 'lower', targets: [] },
    ],
  },
  {
    id: '8b',
    group: 8,
    title: 'idle footprint: 10,000 non-durable queues',
    kind: 'idle-queues',
    args: (c) => ['--mode', 'idle-queues', '--count', c.smoke ? '1000' : '10000'],
    metrics: [
      { key: 'rssMiB', label: 'broker RSS', unit: 'MiB', better: 'lower', targets: [parLower] },
      { key: 'perItemKiB', label: 'RSS growth per queue', unit: 'KiB', better: 'lower', targets: [] },
    ],
  },
];

/** Scenarios matching BENCH_SCENARIOS-style filters: "1,3" (groups) or "1a,7b" (ids). */
export function selectScenarios(filter: string | undefined): Scenario[] {
  if (filter === undefined || filter.trim() === '') return SCENARIOS;
  const wanted = filter.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const out = SCENARIOS.filter((s) => wanted.includes(s.id) || wanted.includes(String(s.group)));
  if (out.length === 0) throw new Error(`no scenario matches '${filter}' (ids: ${SCENARIOS.map((s) => s.id).join(', ')})`);
  return out;
}
