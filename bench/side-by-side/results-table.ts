/**
 * Medians, ratios and targets of a side-by-side run, rendered as the Markdown section that
 * run.ts writes into bench/RESULTS.md between the side-by-side markers.
 */
import type { Metric, Scenario, Target } from './scenarios.js';

export type BrokerName = 'RabbitMQ' | 'Sluice';

export interface RunRecord {
  broker: BrokerName;
  run: number;
  values: Record<string, number>;
  error: string | null;
}

export interface ScenarioResult {
  scenario: Scenario;
  runs: RunRecord[];
}

export interface CeilingRow {
  what: string;
  rate: number | null;
  note: string;
}

export interface RunInfo {
  date: string;
  gitSha: string;
  node: string;
  rabbitmq: string | null;
  machine: string;
  load: string;
  runs: number;
  duration: number;
  /** Seconds of the same load before each measured throughput run. */
  warmup: number;
  /** Markdown, with its own code spans. */
  command: string;
  rabbitNote: string;
  /** Wall time of the whole run, minutes. */
  totalMin: number;
}

export const BEGIN = '<!-- side-by-side:begin -->';
export const END = '<!-- side-by-side:end -->';

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function fmt(v: number | null, unit: string): string {
  if (v === null || !Number.isFinite(v)) return '-';
  if (unit === 'ms') return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
  if (unit === 'MiB' || unit === 'KiB') return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  if (v < 100) return v.toFixed(1);
  return Math.round(v).toLocaleString('en-US');
}

export interface Cell {
  median: number | null;
  values: number[];
  failures: string[];
}

export function cell(r: ScenarioResult, broker: BrokerName, key: string): Cell {
  const runs = r.runs.filter((x) => x.broker === broker);
  const values = runs.filter((x) => x.error === null && Number.isFinite(x.values[key])).map((x) => x.values[key]!);
  const failures = runs.filter((x) => x.error !== null).map((x) => x.error!);
  return { median: median(values), values, failures };
}

function cellText(c: Cell, unit: string, ran: boolean): string {
  if (!ran) return 'not run';
  let s = c.median === null ? '-' : `${fmt(c.median, unit)} ${unit}`;
  if (c.values.length > 1) s += ` <sub>(${fmt(Math.min(...c.values), unit)}–${fmt(Math.max(...c.values), unit)})</sub>`;
  if (c.failures.length > 0) s += ` **FAILED ${c.failures.length}×**: ${c.failures[0]!.replace(/\|/g, '\\|').replace(/\n/g, ' ').slice(0, 160)}`;
  return s;
}

/** 'yes' / 'no' / '-' for one target. */
export function targetHolds(t: Target, sluice: number | null, rabbit: number | null): boolean | null {
  if (t.kind === 'sluice-max') return sluice === null ? null : sluice < t.value;
  if (sluice === null || rabbit === null || rabbit === 0) return null;
  const ratio = sluice / rabbit;
  return t.kind === 'ratio-min' ? ratio >= t.value : ratio <= t.value;
}

export interface TargetVerdict {
  scenario: Scenario;
  metric: Metric;
  target: Target;
  holds: boolean | null;
  ratio: number | null;
  sluice: number | null;
}

export function verdicts(results: ScenarioResult[]): TargetVerdict[] {
  const out: TargetVerdict[] = [];
  for (const r of results) {
    for (const m of r.scenario.metrics) {
      const s = cell(r, 'Sluice', m.key).median;
      const q = cell(r, 'RabbitMQ', m.key).median;
      for (const t of m.targets) out.push({ scenario: r.scenario, metric: m, target: t, holds: targetHolds(t, s, q), ratio: s !== null && q !== null && q !== 0 ? s / q : null, sluice: s });
    }
  }
  return out;
}

export function renderTable(results: ScenarioResult[], withRabbit: boolean, rabbitVersion: string | null): string {
  const rabbitCol = withRabbit ? `RabbitMQ ${rabbitVersion ?? ''}`.trim() : 'RabbitMQ';
  const lines = [
    `| # | scenario | metric | ${rabbitCol} | Sluice | Sluice / RabbitMQ | target | holds |`,
    '|---|---|---|---:|---:|---:|---|---|',
  ];
  for (const r of results) {
    r.scenario.metrics.forEach((m, i) => {
      const s = cell(r, 'Sluice', m.key);
      const q = cell(r, 'RabbitMQ', m.key);
      const ratio = s.median !== null && q.median !== null && q.median !== 0 ? s.median / q.median : null;
      const dir = m.better === 'higher' ? 'higher is better' : 'lower is better';
      const ratioText = ratio === null ? '-' : `${ratio.toFixed(2)}× <sub>(${dir})</sub>`;
      const targets = m.targets.map((t) => t.text).join('; ') || '';
      const holds = m.targets
        .map((t) => {
          const h = targetHolds(t, s.median, q.median);
          return h === null ? '-' : h ? 'yes' : '**no**';
        })
        .join('; ');
      lines.push(
        `| ${i === 0 ? r.scenario.id : ''} | ${i === 0 ? r.scenario.title : ''} | ${m.label} | ${cellText(q, m.unit, withRabbit)} | ${cellText(s, m.unit, true)} | ${ratioText} | ${targets} | ${holds} |`,
      );
    });
  }
  return lines.join('\n');
}

export function renderSection(
  info: RunInfo,
  results: ScenarioResult[],
  withRabbit: boolean,
  ceiling: CeilingRow[],
  params: string[],
): string {
  const v = verdicts(results);
  const held = v.filter((x) => x.holds === true);
  const missed = v.filter((x) => x.holds === false);
  const unknown = v.filter((x) => x.holds === null);
  const desc = (x: TargetVerdict): string =>
    `${x.scenario.id} ${x.metric.label} (${x.target.text}${x.target.kind === 'sluice-max' ? `: ${fmt(x.sluice, x.metric.unit)} ${x.metric.unit}` : x.ratio !== null ? `: ${x.ratio.toFixed(2)}×` : ''})`;
  const out = [
    BEGIN,
    '## Side by side with RabbitMQ',
    '',
    `Latest run: ${info.date}, git ${info.gitSha}, Node ${info.node}, ${info.rabbitmq !== null ? `RabbitMQ ${info.rabbitmq} (Debian package)` : 'RabbitMQ not run'}, ${info.machine}, load average at start ${info.load} (the machine is shared, so absolute figures drift; compare the ratios).`,
    '',
    `Command: ${info.command} (${info.totalMin} min) — ${info.runs} run(s) per broker and scenario, alternating RabbitMQ and Sluice, ${info.duration} s per throughput run${info.warmup > 0 ? `, measured after ${info.warmup} s of the same load (warm-up, not counted; both brokers)` : ''}; figures are medians, with the range of the runs in brackets.${info.rabbitNote === '' ? '' : ` ${info.rabbitNote}`}`,
    '',
    'Both brokers run as separate processes on the same machine as the load generator (`sluice perf`, its own process, one connection per producer and per consumer; its ceiling is below). Sluice: `node dist/src/cli/main.js start --data-dir <fresh dir> --amqp-port 0 --host 127.0.0.1`, a new process and data directory per run. RabbitMQ: a throwaway node (`sluicebench@localhost`, no plugins, default configuration, its own data directory on the same disk), fresh queues per run and a fresh node per run of scenario 8. Throughput is end-to-end: messages consumed during the measured run / its length (the warm-up before it, with the same load, is not counted). Latency is consume time − the send time in the first 8 body bytes (one clock, one machine). RSS is VmRSS of the broker process (beam.smp for RabbitMQ) once the idle connections or queues exist; "growth" is the difference from the same broker just before.',
    '',
    renderTable(results, withRabbit, info.rabbitmq),
    '',
    `Targets (issue 5; "on par" is read as within 20 %): ${held.length} hold, ${missed.length} do not${unknown.length > 0 ? `, ${unknown.length} not measured` : ''}.`,
    '',
  ];
  if (held.length > 0) out.push(`- hold: ${held.map(desc).join('; ')}`);
  if (missed.length > 0) out.push(`- do not hold: ${missed.map(desc).join('; ')}`);
  if (unknown.length > 0) out.push(`- not measured: ${unknown.map(desc).join('; ')}`);
  out.push('', 'Parameters (`sluice perf` flags per scenario; each run adds `--uri`, `--json`, `--cleanup` and its own `--queue-prefix`):', '', '```', ...params, '```', '');
  if (ceiling.length > 0) {
    out.push(
      "The load generator's own ceiling, against `sluice perf --sink-server` (a peer that completes the handshake, drops publishes, confirms them, and generates deliveries as fast as the socket drains), each in its own process, same machine:",
      '',
      '| perf tool alone | msg/s | |',
      '|---|---:|---|',
      ...ceiling.map((c) => `| ${c.what} | ${c.rate === null ? '-' : Math.round(c.rate).toLocaleString('en-US')} | ${c.note} |`),
      '',
    );
  }
  out.push(END);
  return out.join('\n');
}

/** Replaces the section between the markers, or appends it at the end. */
export function spliceSection(file: string, section: string): string {
  const b = file.indexOf(BEGIN);
  const e = file.indexOf(END);
  if (b >= 0 && e > b) return file.slice(0, b) + section + file.slice(e + END.length);
  return `${file.replace(/\s*$/, '')}\n\n${section}\n`;
}
