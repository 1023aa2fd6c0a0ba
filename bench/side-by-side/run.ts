/**
 * `npm run bench`: Sluice next to RabbitMQ, through the shipped perf tool.
 *
 *   node dist/bench/side-by-side/run.js [--smoke] [--profile DIR] [--runs N] [--duration S] [--warmup S]
 *        [--scenarios 1,3|1a,7b] [--no-rabbitmq] [--no-ceiling] [--no-write]
 *
 * Environment overrides: BENCH_RUNS (3), BENCH_DURATION (10 s), BENCH_WARMUP (5 s of the same
 * load before each measured throughput run, for both brokers), BENCH_SCENARIOS (all),
 * BENCH_RABBITMQ=0, BENCH_CEILING=0, BENCH_RESULTS_FILE (default: bench/RESULTS.md of the
 * checkout this build lives in), BENCH_GIT_SHA (for a build outside a git checkout). Installs nothing: RabbitMQ runs only if rabbitmq-server is
 * installed (a throwaway node, see rabbitmq-node.ts), else Sluice runs alone and the table
 * says so. A full run (all scenarios) writes its section of bench/RESULTS.md.
 *
 *   --smoke          each scenario once for 1 s (small churn and idle counts) against Sluice
 *                    only, plus the sink; exit 1 if any fails. Writes nothing. A quick
 *                    self-check of the perf tool and the runner.
 *   --profile DIR    Sluice only: scenarios 1a (16 B) and 2b (1 KiB) with the broker under
 *                    `node --cpu-prof`, then the top self-time functions of each profile.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { invokePerf, rssKiB } from './perf-invoke.js';
import { RabbitNode, freePort, rabbitmqInstalled } from './rabbitmq-node.js';
import { renderSection, renderTable, spliceSection, verdicts, type BrokerName, type CeilingRow, type RunRecord, type ScenarioResult } from './results-table.js';
import { SCENARIOS, selectScenarios, type Scenario, type ScenarioContext } from './scenarios.js';
import { SluiceProcess } from './sluice-process.js';

const here = dirname(fileURLToPath(import.meta.url));
/** dist/ (or wherever this build lives): dist/bench/side-by-side → dist. */
const distRoot = resolve(here, '..', '..');
const mainJs = join(distRoot, 'src', 'cli', 'main.js');
const cpuTopJs = join(distRoot, 'bench', 'storage', 'cpuprofile-top.js');

function findRepoRoot(): string {
  for (let d = distRoot; d !== dirname(d); d = dirname(d)) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'bench', 'RESULTS.md'))) return d;
  }
  return resolve(distRoot, '..');
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const say = (s: string): void => void process.stdout.write(s + '\n');

interface Config {
  runs: number;
  duration: number;
  warmup: number;
  scenarios: Scenario[];
  rabbit: boolean;
  ceiling: boolean;
  smoke: boolean;
  profileDir: string | null;
  write: boolean;
  full: boolean;
}

function config(): Config {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean' },
      profile: { type: 'string' },
      runs: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      scenarios: { type: 'string' },
      'no-rabbitmq': { type: 'boolean' },
      'no-ceiling': { type: 'boolean' },
      'no-write': { type: 'boolean' },
    },
  });
  const env = process.env;
  const smoke = values.smoke ?? false;
  const filter = values.scenarios ?? env.BENCH_SCENARIOS;
  const scenarios = selectScenarios(filter);
  return {
    smoke,
    runs: smoke ? 1 : Number(values.runs ?? env.BENCH_RUNS ?? 3),
    duration: smoke ? 1 : Number(values.duration ?? env.BENCH_DURATION ?? 10),
    warmup: smoke ? 0 : Number(values.warmup ?? env.BENCH_WARMUP ?? 5),
    scenarios,
    rabbit: !smoke && !values['no-rabbitmq'] && env.BENCH_RABBITMQ !== '0',
    ceiling: !values['no-ceiling'] && env.BENCH_CEILING !== '0',
    profileDir: values.profile ?? null,
    write: !smoke && !values['no-write'] && scenarios.length === SCENARIOS.length,
    full: scenarios.length === SCENARIOS.length,
  };
}

/** One broker as the runner drives it: ready before a run, cleaned after. */
interface Target {
  name: BrokerName;
  /** Starts (or reuses) the broker; returns its URL and pid. */
  prepare(s: Scenario, run: number): Promise<{ url: string; pid: number }>;
  finish(): Promise<void>;
}

class SluiceTarget implements Target {
  readonly name = 'Sluice' as const;
  #proc: SluiceProcess | null = null;
  constructor(
    private readonly base: string,
    private readonly cpuProfDir: (s: Scenario) => string | null,
  ) {}

  async prepare(s: Scenario, run: number): Promise<{ url: string; pid: number }> {
    const p = new SluiceProcess({ mainJs, dataDir: join(this.base, `sluice-data-${s.id}-${run}`), cpuProfDir: this.cpuProfDir(s), logFile: join(this.base, 'sluice.log') });
    this.#proc = p;
    await p.start();
    return { url: p.url, pid: p.pid };
  }

  async finish(): Promise<void> {
    const p = this.#proc;
    this.#proc = null;
    if (p === null) return;
    const code = await p.stop();
    if (code !== '0') say(`    (sluice exited with ${code})`);
    p.remove();
  }

  stopNow(): void {
    this.#proc?.stopNow();
  }
}

class RabbitTarget implements Target {
  readonly name = 'RabbitMQ' as const;
  constructor(readonly node: RabbitNode) {}

  async prepare(s: Scenario): Promise<{ url: string; pid: number }> {
    // Idle-footprint runs get a fresh node so the baseline is not the heap of earlier runs.
    if (s.group === 8) {
      await this.node.stop();
      await this.node.start();
      await sleep(2000);
    }
    return { url: this.node.url, pid: this.node.pid };
  }

  async finish(): Promise<void> {}
}

async function runOne(t: Target, s: Scenario, run: number, ctx: ScenarioContext, logFile: string): Promise<RunRecord> {
  const rec: RunRecord = { broker: t.name, run, values: {}, error: null };
  let broker: { url: string; pid: number };
  try {
    broker = await t.prepare(s, run);
  } catch (e) {
    rec.error = `broker did not start: ${(e as Error).message}`;
    return rec;
  }
  try {
    const args = ['--uri', broker.url, '--label', `${s.id}/${t.name}/${run}`, '--queue-prefix', `sbs-${s.id}-${run}-`, ...s.args(ctx)];
    if (s.kind === 'throughput') args.push('--cleanup');
    const timeout = (s.kind === 'throughput' ? ctx.duration + ctx.warmup + 120 : 600) * 1000;
    let baseline = 0;
    let loaded = 0;
    if (s.kind === 'idle-connections' || s.kind === 'idle-queues') {
      await sleep(1000);
      baseline = rssKiB(broker.pid);
    }
    const out = await invokePerf(mainJs, args, logFile, timeout, async () => {
      await sleep(2000);
      loaded = rssKiB(broker.pid);
    });
    const j = out.json;
    if (j === null) rec.error = `perf exited ${out.code} without a summary: ${out.stderrTail}`;
    else if (j.error !== null && j.error !== undefined) rec.error = String(j.error);
    else if (out.code !== 0) rec.error = `perf exited ${out.code}: ${out.stderrTail}`;
    if (j !== null) {
      if (s.kind === 'throughput') {
        const lat = j.latencyMs as Record<string, number | null>;
        rec.values.consumeRate = j.consumeRate as number;
        rec.values.publishRate = j.publishRate as number;
        for (const k of ['p50', 'p99', 'p999'] as const) if (lat[k] !== null) rec.values[k] = lat[k]!;
      } else if (s.kind === 'queue-churn' || s.kind === 'connection-churn') {
        rec.values.rate = j.rate as number;
      } else if (loaded > 0) {
        rec.values.rssMiB = loaded / 1024;
        rec.values.baselineMiB = baseline / 1024;
        rec.values.perItemKiB = (loaded - baseline) / (j.count as number);
      }
    }
  } catch (e) {
    rec.error = (e as Error).message;
  } finally {
    await t.finish();
  }
  return rec;
}

function describe(r: RunRecord, s: Scenario): string {
  const v = r.values;
  const parts: string[] = [];
  if (v.consumeRate !== undefined) parts.push(`end-to-end ${Math.round(v.consumeRate).toLocaleString('en-US')} msg/s, publish ${Math.round(v.publishRate ?? 0).toLocaleString('en-US')} msg/s`);
  if (v.p99 !== undefined) parts.push(`p50 ${v.p50} ms, p99 ${v.p99} ms, p99.9 ${v.p999} ms`);
  if (v.rate !== undefined) parts.push(`${v.rate} ${s.metrics[0]!.unit}`);
  if (v.rssMiB !== undefined) parts.push(`RSS ${v.rssMiB.toFixed(1)} MiB (baseline ${v.baselineMiB!.toFixed(1)} MiB, ${v.perItemKiB!.toFixed(1)} KiB each)`);
  if (r.error !== null) parts.push(`FAILED: ${r.error}`);
  return parts.join('; ');
}

const MIB = 1024 * 1024;

/** The perf tool against its own sink server: max publish and consume rates. */
async function measureCeiling(base: string, duration: number, logFile: string): Promise<CeilingRow[]> {
  const rows: CeilingRow[] = [];
  const cases: Array<{ what: string; size: number; args: string[]; key: 'publishRate' | 'consumeRate'; note: string }> = [
    { what: 'publish, 16 B, 1 producer', size: 16, args: ['--producers', '1', '--consumers', '0', '--size', '16'], key: 'publishRate', note: 'no confirms' },
    { what: 'publish, 1 KiB, 1 producer', size: 1024, args: ['--producers', '1', '--consumers', '0', '--size', '1024'], key: 'publishRate', note: 'no confirms' },
    { what: 'publish, 1 KiB, 1 producer, confirms (window 1000)', size: 1024, args: ['--producers', '1', '--consumers', '0', '--size', '1024', '--persistent', '--confirm', '1000'], key: 'publishRate', note: 'the sink acks once per socket read' },
    { what: 'consume, 16 B, 1 consumer, autoack', size: 16, args: ['--producers', '0', '--consumers', '1', '--autoack'], key: 'consumeRate', note: '' },
    { what: 'consume, 16 B, 1 consumer, prefetch 1000, ack each', size: 16, args: ['--producers', '0', '--consumers', '1', '--prefetch', '1000'], key: 'consumeRate', note: '' },
    { what: 'consume, 1 KiB, 1 consumer, autoack', size: 1024, args: ['--producers', '0', '--consumers', '1', '--autoack'], key: 'consumeRate', note: '' },
    { what: 'publish, 1 MiB, 1 producer, confirms (window 10)', size: MIB, args: ['--producers', '1', '--consumers', '0', '--size', String(MIB), '--persistent', '--confirm', '10'], key: 'publishRate', note: 'as scenario 6' },
    { what: 'consume, 1 MiB, 1 consumer, prefetch 10, ack each', size: MIB, args: ['--producers', '0', '--consumers', '1', '--prefetch', '10'], key: 'consumeRate', note: 'as scenario 6; the sink copies 1 MiB per delivery' },
  ];
  for (const c of cases) {
    const port = await freePort();
    const sink = spawn(process.execPath, [mainJs, 'perf', '--sink-server', '--port', String(port), '--size', String(c.size)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((res) => sink.stdout.once('data', () => res()));
    const out = await invokePerf(mainJs, ['--uri', `amqp://guest:guest@127.0.0.1:${port}`, '--duration', String(duration), ...c.args], logFile, (duration + 60) * 1000);
    sink.kill('SIGTERM');
    const rate = out.json === null ? null : (out.json[c.key] as number);
    rows.push({ what: c.what, rate, note: c.note + (out.json === null ? ` FAILED: ${out.stderrTail}` : '') });
    say(`  ceiling: ${c.what}: ${rate === null ? 'FAILED' : Math.round(rate).toLocaleString('en-US')} msg/s`);
  }
  void base;
  return rows;
}

function machine(): string {
  let model = cpus()[0]?.model ?? 'unknown CPU';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m !== null) model = m[1]!.trim();
  } catch {
    // not Linux
  }
  return `${model}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`;
}

function gitSha(root: string): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

async function profile(cfg: Config, base: string, dir: string, logFile: string): Promise<void> {
  const ids = ['1a', '2b'];
  for (const id of ids) {
    const s = SCENARIOS.find((x) => x.id === id)!;
    const profDir = resolve(dir, `scenario-${id}`);
    rmSync(profDir, { recursive: true, force: true });
    mkdirSync(profDir, { recursive: true });
    const t = new SluiceTarget(base, () => profDir);
    const r = await runOne(t, s, 1, { duration: cfg.duration, warmup: cfg.warmup, smoke: false }, logFile);
    say(`profile ${id} (${s.title}): ${describe(r, s)}`);
    const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile'));
    for (const f of files) {
      say(`  ${join(profDir, f)}`);
      const top = spawnSync(process.execPath, [cpuTopJs, join(profDir, f), '30'], { encoding: 'utf8' });
      say(top.stdout + top.stderr);
    }
  }
}

async function main(): Promise<number> {
  const started = Date.now();
  const cfg = config();
  const root = findRepoRoot();
  const base = mkdtempSync(join(tmpdir(), 'sluice-side-by-side-'));
  const logFile = join(base, 'perf.log');
  const ctx: ScenarioContext = { duration: cfg.duration, warmup: cfg.warmup, smoke: cfg.smoke };
  say(`side-by-side: work dir ${base} (perf output in ${logFile})`);
  if (!existsSync(mainJs)) throw new Error(`${mainJs} is missing; build first (npx tsc -p tsconfig.json)`);

  const sluice = new SluiceTarget(base, () => null);
  let rabbit: RabbitNode | null = null;
  const cleanup = (): void => {
    sluice.stopNow();
    rabbit?.stopNow();
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`side-by-side: ${sig}, stopping brokers`);
      cleanup();
      process.exit(130);
    });
  }

  if (cfg.profileDir !== null) {
    await profile(cfg, base, cfg.profileDir, logFile);
    rmSync(base, { recursive: true, force: true, maxRetries: 2 });
    return 0;
  }

  let rabbitNote = '';
  if (cfg.rabbit && rabbitmqInstalled()) {
    rabbit = new RabbitNode(join(base, 'rabbitmq'));
    say('side-by-side: starting a throwaway RabbitMQ node…');
    await rabbit.start();
    say(`side-by-side: RabbitMQ ${rabbit.version} on port ${rabbit.port} (pid ${rabbit.pid})`);
  } else {
    rabbitNote = cfg.smoke
      ? 'Smoke run: Sluice only.'
      : cfg.rabbit
        ? '**rabbitmq-server is not installed on this machine, so only Sluice ran** (install the Debian package `rabbitmq-server` to compare).'
        : 'RabbitMQ was skipped (BENCH_RABBITMQ=0 / --no-rabbitmq).';
    say(`side-by-side: ${rabbitNote}`);
  }
  const rabbitTarget = rabbit === null ? null : new RabbitTarget(rabbit);
  const info = {
    date: new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'),
    gitSha: process.env.BENCH_GIT_SHA ?? gitSha(root),
    node: process.version,
    rabbitmq: rabbit?.version ?? null,
    machine: machine(),
    load: loadavg().map((x) => x.toFixed(2)).join(', '),
    runs: cfg.runs,
    duration: cfg.duration,
    warmup: cfg.warmup,
    command:
      process.env.BENCH_GIT_SHA !== undefined
        ? '`npm run bench` in a clean `git archive` export of that commit (so work in progress elsewhere in the tree does not change what runs)'
        : '`npm run bench`',
    totalMin: 0,
    rabbitNote,
  };

  const results: ScenarioResult[] = [];
  let failures = 0;
  try {
    for (const s of cfg.scenarios) {
      say(`\n${s.id}: ${s.title}\n    sluice perf ${s.args(ctx).join(' ')}`);
      const r: ScenarioResult = { scenario: s, runs: [] };
      results.push(r);
      for (let run = 1; run <= cfg.runs; run++) {
        const order: Target[] = rabbitTarget === null ? [sluice] : run % 2 === 1 ? [rabbitTarget, sluice] : [sluice, rabbitTarget];
        for (const t of order) {
          const t0 = Date.now();
          const rec = await runOne(t, s, run, ctx, logFile);
          r.runs.push(rec);
          if (rec.error !== null && t.name === 'Sluice') failures++;
          say(`  run ${run} ${t.name.padEnd(8)} ${describe(rec, s)}  [${((Date.now() - t0) / 1000).toFixed(1)} s]`);
        }
      }
    }
    let ceiling: CeilingRow[] = [];
    if (cfg.ceiling) {
      say('\nperf tool ceiling (sink server):');
      ceiling = await measureCeiling(base, cfg.smoke ? 1 : Math.min(3, cfg.duration), logFile);
      if (ceiling.some((c) => c.rate === null)) failures++;
    }
    say(`\n${renderTable(results, rabbit !== null, rabbit?.version ?? null)}\n`);
    for (const v of verdicts(results)) say(`target ${v.holds === null ? '-  ' : v.holds ? 'yes' : 'NO '} ${v.scenario.id} ${v.metric.label}: ${v.target.text}${v.ratio !== null ? ` (${v.ratio.toFixed(2)}×)` : ''}`);
    say(`\nside-by-side: ${((Date.now() - started) / 1000).toFixed(0)} s`);
    info.totalMin = Math.round((Date.now() - started) / 60_000);
    if (cfg.write) {
      const params = cfg.scenarios.map((s) => `${s.id.padEnd(3)} ${s.args(ctx).join(' ')}`);
      const file = process.env.BENCH_RESULTS_FILE ?? join(root, 'bench', 'RESULTS.md');
      writeFileSync(file, spliceSection(readFileSync(file, 'utf8'), renderSection(info, results, rabbit !== null, ceiling, params)));
      say(`side-by-side: wrote ${file}`);
    } else if (!cfg.smoke) {
      say('side-by-side: not all scenarios ran, so bench/RESULTS.md is left as it is');
    }
  } finally {
    await rabbit?.stop();
    rabbit?.remove();
    sluice.stopNow();
  }
  if (failures === 0) rmSync(base, { recursive: true, force: true, maxRetries: 2 });
  else say(`side-by-side: kept ${base} for its logs`);
  if (cfg.smoke) say(failures === 0 ? 'smoke: ok' : `smoke: ${failures} failure(s)`);
  return cfg.smoke && failures > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`side-by-side: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
