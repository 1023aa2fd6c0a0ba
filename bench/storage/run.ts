/**
 * Storage benchmark (`npm run bench:storage`).
 *
 *   1. The machine's own limits, measured in the same run:
 *      - sequential write: ~1 GiB in 1 MiB writes to a fresh file, one fdatasync at the end;
 *      - a bare 4 KiB write + fdatasync loop on a growing file (what the journal does).
 *   2. Storage appends: record size x durability x concurrent appenders x target logs. Each
 *      appender appends to log (index % logs) and awaits log.flushed() before its next append
 *      ("window 1", like a publisher waiting for its confirm). "Pipelined" cases issue K appends,
 *      then await flushed() once.
 *   3. Targets, printed as PASS/FAIL with the measured ratio.
 *
 * Human-readable lines first, then a markdown table, then ONE JSON line with every figure.
 *
 * Options (argv or env):
 *   --quick                 short cases (BENCH_QUICK=1)
 *   --duration=MS           measured time per case (BENCH_DURATION_MS; default 2500, quick 800)
 *   --warmup=MS             unmeasured time before each case (BENCH_WARMUP_MS; default 400, quick 200)
 *   --seq-mib=N             MiB for the sequential-write probe (BENCH_SEQ_MIB; default 1024, quick 256)
 *   --pipeline=K            appends per flushed() in pipelined cases (BENCH_PIPELINE; default 32)
 *   --only=SUBSTR[,SUBSTR]  run only cases whose id contains one of these (e.g. fsync/1024B/a256/l1/w1)
 *   --no-machine            skip the machine probes (targets needing them print SKIP)
 *   --dir=PATH              scratch directory (BENCH_DIR; default <repo>/tmp/bench-storage)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Storage, type Durability, type SegmentLog } from '../../src/storage/mod.js';

// ---------------------------------------------------------------- options

function arg(name: string): string | undefined {
  const pre = `--${name}=`;
  for (const a of process.argv.slice(2)) if (a.startsWith(pre)) return a.slice(pre.length);
  return undefined;
}
function flag(name: string): boolean {
  return process.argv.includes(`--${name}`);
}

const QUICK = flag('quick') || process.env['BENCH_QUICK'] === '1';
const DURATION_MS = Number(arg('duration') ?? process.env['BENCH_DURATION_MS'] ?? (QUICK ? 800 : 2500));
const WARMUP_MS = Number(arg('warmup') ?? process.env['BENCH_WARMUP_MS'] ?? (QUICK ? 200 : 400));
const SEQ_MIB = Number(arg('seq-mib') ?? process.env['BENCH_SEQ_MIB'] ?? (QUICK ? 256 : 1024));
const FSYNC_LOOP_MS = QUICK ? 1000 : 2000;
const PIPELINE = Number(arg('pipeline') ?? process.env['BENCH_PIPELINE'] ?? 32);
const ONLY = (arg('only') ?? process.env['BENCH_ONLY'] ?? '').split(',').filter((s) => s.length > 0);
const NO_MACHINE = flag('no-machine');

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const SCRATCH = path.resolve(arg('dir') ?? process.env['BENCH_DIR'] ?? path.join(REPO, 'tmp', 'bench-storage'));

/** 'none' never blocks in flushed(): an appender yields to the event loop after this many records
 * per turn in total (like a socket read delivering a batch), so the commit loop and timers run. */
const NONE_TURN_BUDGET = 4096;
/** ...and waits for a round when its log has this many bytes appended but not yet written. */
const NONE_MAX_BACKLOG_BYTES = 32 * 1024 * 1024;

// ---------------------------------------------------------------- helpers

const gc = (globalThis as { gc?: () => void }).gc;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
function immediate(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
function p<T>(fn: (cb: (err: NodeJS.ErrnoException | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
}
function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
function fmt1(n: number): string {
  return n.toFixed(1);
}
function sh(cmd: string): string {
  try {
    return execSync(cmd, { cwd: REPO, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return 'unknown';
  }
}

function machineInfo(): Record<string, unknown> {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1]!.trim();
  } catch {
    // not Linux
  }
  return {
    nproc: os.availableParallelism(),
    cpuModel,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    date: new Date().toISOString(),
    gitSha: sh('git rev-parse --short HEAD'),
    gitDirty: sh('git status --porcelain --untracked-files=no src') !== '',
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
    scratch: SCRATCH,
    uvThreadpool: process.env['UV_THREADPOOL_SIZE'] ?? '4 (default)',
  };
}

// ---------------------------------------------------------------- machine limits

interface SeqResult {
  bytes: number;
  writeMs: number;
  syncMs: number;
  totalMs: number;
  MBps: number;
}

/** (a) ~1 GiB in 1 MiB writes to a fresh file, then one fdatasync; MB/s = bytes / total time. */
async function seqWrite(mib: number): Promise<SeqResult> {
  const file = path.join(SCRATCH, 'seq.bin');
  fs.rmSync(file, { force: true });
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const t0 = performance.now();
  const fd = await p<number>((cb) => fs.open(file, 'w', 0o644, cb));
  let pos = 0;
  for (let i = 0; i < mib; i++) {
    const n = await p<number>((cb) => fs.write(fd, chunk, 0, chunk.length, pos, cb));
    pos += n;
  }
  const t1 = performance.now();
  await p<void>((cb) => fs.fdatasync(fd, (e) => cb(e, undefined)));
  const t2 = performance.now();
  await p<void>((cb) => fs.close(fd, (e) => cb(e, undefined)));
  fs.rmSync(file, { force: true });
  return { bytes: pos, writeMs: t1 - t0, syncMs: t2 - t1, totalMs: t2 - t0, MBps: pos / ((t2 - t0) / 1000) / 1e6 };
}

interface FsyncLoopResult {
  writeBytes: number;
  fsyncs: number;
  seconds: number;
  fsyncsPerSec: number;
  meanMs: number;
}

/** (b) 4 KiB write at the end of a growing file, then fdatasync, repeated. */
async function fsyncLoop(ms: number): Promise<FsyncLoopResult> {
  const file = path.join(SCRATCH, 'fsync-loop.bin');
  fs.rmSync(file, { force: true });
  const buf = Buffer.alloc(4096, 0x61);
  const fd = await p<number>((cb) => fs.open(file, 'w', 0o644, cb));
  let pos = 0;
  let n = 0;
  const t0 = performance.now();
  let now = t0;
  while (now - t0 < ms) {
    pos += await p<number>((cb) => fs.write(fd, buf, 0, buf.length, pos, cb));
    await p<void>((cb) => fs.fdatasync(fd, (e) => cb(e, undefined)));
    n++;
    now = performance.now();
  }
  const s = (now - t0) / 1000;
  await p<void>((cb) => fs.close(fd, (e) => cb(e, undefined)));
  fs.rmSync(file, { force: true });
  return { writeBytes: buf.length, fsyncs: n, seconds: s, fsyncsPerSec: n / s, meanMs: (s * 1000) / n };
}

// ---------------------------------------------------------------- storage cases

interface Case {
  id: string;
  recordBytes: number;
  durability: Durability;
  appenders: number;
  logs: number;
  /** Appends per flushed() (1 = window 1). */
  window: number;
}

interface CaseResult extends Case {
  logsUsed: number;
  seconds: number;
  appends: number;
  appendsPerSec: number;
  payloadMBps: number;
  fsyncsPerSec: number;
  recordsPerFsync: number | null;
  roundsPerSec: number;
  recordsPerRound: number;
  journalMBps: number;
  setupMs: number;
}

function caseId(c: Omit<Case, 'id'>): string {
  return `${c.durability}/${c.recordBytes}B/a${c.appenders}/l${c.logs}/${c.window === 1 ? 'w1' : `p${c.window}`}`;
}

function buildCases(): Case[] {
  const out: Case[] = [];
  const add = (c: Omit<Case, 'id'>): void => {
    out.push({ ...c, id: caseId(c) });
  };
  for (const recordBytes of [16, 1024]) {
    for (const durability of ['fsync', 'os', 'none'] as Durability[]) {
      for (const appenders of [1, 16, 256]) {
        for (const logs of [1, 100]) add({ recordBytes, durability, appenders, logs, window: 1 });
      }
    }
  }
  // Pipelined: each appender issues K appends, then awaits flushed() once.
  for (const recordBytes of [16, 1024]) {
    for (const durability of ['fsync', 'os'] as Durability[]) {
      for (const logs of [1, 100]) add({ recordBytes, durability, appenders: 256, logs, window: PIPELINE });
    }
  }
  return ONLY.length === 0 ? out : out.filter((c) => ONLY.some((o) => c.id.includes(o)));
}

interface RunState {
  stop: boolean;
  acked: number;
  /** Records appended in the current event-loop turn ('none' only). */
  turnCount: number;
  turn: Promise<void> | null;
}

function nextTurn(st: RunState): Promise<void> {
  if (st.turn === null) {
    st.turn = immediate().then(() => {
      st.turn = null;
      st.turnCount = 0;
    });
  }
  return st.turn;
}

async function appender(log: SegmentLog, payload: Buffer, k: number, st: RunState): Promise<void> {
  const none = log.durability === 'none';
  const maxBacklog = Math.max(1, Math.floor(NONE_MAX_BACKLOG_BYTES / (payload.length + 28)));
  while (!st.stop) {
    for (let j = 0; j < k; j++) log.append(payload);
    await log.flushed();
    st.acked += k;
    if (none) {
      st.turnCount += k;
      if (log.nextOffset - log.writtenOffset > maxBacklog) await log.waitForOffset(log.nextOffset - 1);
      else if (st.turnCount >= NONE_TURN_BUDGET) await nextTurn(st);
    }
  }
}

async function runCase(c: Case, index: number): Promise<CaseResult> {
  const dir = path.join(SCRATCH, `case-${index}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const tSetup = performance.now();
  const { storage } = await Storage.open(dir);
  const logsUsed = Math.min(c.logs, c.appenders);
  const logs: SegmentLog[] = [];
  for (let i = 0; i < c.logs; i++) logs.push(await storage.openLog(`bench-${i}`, { durability: c.durability }));
  const setupMs = performance.now() - tSetup;
  const payload = Buffer.alloc(c.recordBytes, 0x61);
  const st: RunState = { stop: false, acked: 0, turnCount: 0, turn: null };
  const stats = storage.committer.stats;
  const running: Promise<void>[] = [];
  for (let a = 0; a < c.appenders; a++) running.push(appender(logs[a % c.logs]!, payload, c.window, st));

  await sleep(WARMUP_MS);
  const s0 = { t: performance.now(), acked: st.acked, syncs: stats.journalSyncs, rounds: stats.rounds, jbytes: stats.journalBytes };
  await sleep(DURATION_MS);
  const s1 = { t: performance.now(), acked: st.acked, syncs: stats.journalSyncs, rounds: stats.rounds, jbytes: stats.journalBytes };
  st.stop = true;
  await Promise.all(running);
  await storage.close();
  fs.rmSync(dir, { recursive: true, force: true });

  const seconds = (s1.t - s0.t) / 1000;
  const appends = s1.acked - s0.acked;
  const syncs = s1.syncs - s0.syncs;
  const rounds = s1.rounds - s0.rounds;
  return {
    ...c,
    logsUsed,
    seconds,
    appends,
    appendsPerSec: appends / seconds,
    payloadMBps: (appends * c.recordBytes) / seconds / 1e6,
    fsyncsPerSec: syncs / seconds,
    recordsPerFsync: syncs > 0 ? appends / syncs : null,
    roundsPerSec: rounds / seconds,
    recordsPerRound: rounds > 0 ? appends / rounds : 0,
    journalMBps: (s1.jbytes - s0.jbytes) / seconds / 1e6,
    setupMs,
  };
}

// ---------------------------------------------------------------- targets

interface Target {
  name: string;
  mode: string;
  measured: number | null;
  threshold: number;
  ratio: number | null;
  status: 'PASS' | 'FAIL' | 'SKIP';
  detail: string;
}

function evalTargets(results: CaseResult[], seq: SeqResult | null): Target[] {
  const get = (id: string): CaseResult | undefined => results.find((r) => r.id === id);
  const out: Target[] = [];
  const push = (name: string, mode: string, measured: number | null, threshold: number | null, detail: string): void => {
    if (measured === null || threshold === null) {
      out.push({ name, mode, measured, threshold: threshold ?? 0, ratio: null, status: 'SKIP', detail: `${detail} (not measured in this run)` });
      return;
    }
    const ratio = measured / threshold;
    out.push({ name, mode, measured, threshold, ratio, status: ratio >= 1 ? 'PASS' : 'FAIL', detail });
  };
  for (const w of [1, PIPELINE]) {
    const tag = w === 1 ? 'w1' : `p${w}`;
    const mode = w === 1 ? 'window 1 (await flushed() after every append)' : `pipelined (${w} appends per flushed())`;
    const f1 = get(`fsync/1024B/a256/l1/${tag}`);
    const f100 = get(`fsync/1024B/a256/l100/${tag}`);
    push(
      'fsync 1 KiB x 256 appenders, 1 log: payload MB/s >= 60% of raw sequential MB/s',
      mode,
      f1 ? f1.payloadMBps : null,
      seq ? 0.6 * seq.MBps : null,
      f1 && seq ? `${fmt1(f1.payloadMBps)} MB/s vs 60% of ${fmt1(seq.MBps)} = ${fmt1(0.6 * seq.MBps)} MB/s (${fmt1((100 * f1.payloadMBps) / seq.MBps)}% of raw)` : 'fsync/1024B/a256/l1',
    );
    push(
      'fsync 1 KiB x 256 appenders: 100 logs >= 80% of 1 log',
      mode,
      f100 ? f100.appendsPerSec : null,
      f1 ? 0.8 * f1.appendsPerSec : null,
      f1 && f100 ? `100 logs ${fmtInt(f100.appendsPerSec)}/s vs 1 log ${fmtInt(f1.appendsPerSec)}/s (${fmt1((100 * f100.appendsPerSec) / f1.appendsPerSec)}%)` : 'fsync/1024B/a256/l1 and l100',
    );
    const o16 = get(`os/16B/a256/l1/${tag}`);
    push('os 16 B x 256 appenders, 1 log: >= 1,000,000 appends/s', mode, o16 ? o16.appendsPerSec : null, 1_000_000, o16 ? `${fmtInt(o16.appendsPerSec)}/s` : 'os/16B/a256/l1');
    const s16 = get(`fsync/16B/a256/l1/${tag}`);
    push('fsync 16 B x 256 appenders, 1 log: >= 300,000 appends/s', mode, s16 ? s16.appendsPerSec : null, 300_000, s16 ? `${fmtInt(s16.appendsPerSec)}/s` : 'fsync/16B/a256/l1');
  }
  return out;
}

// ---------------------------------------------------------------- output

function caseLine(r: CaseResult): string {
  return [
    r.id.padEnd(26),
    `${fmtInt(r.appendsPerSec).padStart(11)} appends/s`,
    `${fmt1(r.payloadMBps).padStart(7)} MB/s`,
    `${fmtInt(r.fsyncsPerSec).padStart(6)} fsyncs/s`,
    `${(r.recordsPerFsync === null ? '-' : fmt1(r.recordsPerFsync)).padStart(7)} rec/fsync`,
    `${fmtInt(r.roundsPerSec).padStart(6)} rounds/s`,
  ].join('  ');
}

function markdownTable(results: CaseResult[]): string[] {
  const lines = [
    '| durability | record | appenders | logs (used) | mode | appends/s | payload MB/s | fsyncs/s | records/fsync | rounds/s | journal MB/s |',
    '|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    lines.push(
      `| ${r.durability} | ${r.recordBytes} B | ${r.appenders} | ${r.logs} (${r.logsUsed}) | ${r.window === 1 ? 'window 1' : `pipelined ${r.window}`} | ${fmtInt(r.appendsPerSec)} | ${fmt1(r.payloadMBps)} | ${fmtInt(r.fsyncsPerSec)} | ${r.recordsPerFsync === null ? '-' : fmt1(r.recordsPerFsync)} | ${fmtInt(r.roundsPerSec)} | ${fmt1(r.journalMBps)} |`,
    );
  }
  return lines;
}

async function main(): Promise<void> {
  fs.mkdirSync(SCRATCH, { recursive: true });
  const machine = machineInfo();
  const settings = { quick: QUICK, durationMs: DURATION_MS, warmupMs: WARMUP_MS, seqMiB: SEQ_MIB, fsyncLoopMs: FSYNC_LOOP_MS, pipeline: PIPELINE, only: ONLY };
  console.log(`# Sluice storage benchmark  ${machine['date']}  git ${machine['gitSha']}${machine['gitDirty'] ? ' (src dirty)' : ''}`);
  console.log(`# ${machine['nproc']} x ${machine['cpuModel']}, Node ${machine['node']}, load ${(machine['loadavg'] as number[]).join(' ')}`);
  console.log(`# ${QUICK ? 'quick; ' : ''}${DURATION_MS} ms per case after ${WARMUP_MS} ms warmup; scratch ${SCRATCH}`);

  let seq: SeqResult | null = null;
  let loop: FsyncLoopResult | null = null;
  if (!NO_MACHINE) {
    seq = await seqWrite(SEQ_MIB);
    console.log(
      `machine  sequential write  ${SEQ_MIB} MiB in 1 MiB writes + 1 fdatasync: ${fmt1(seq.MBps)} MB/s  (writes ${fmtInt(seq.writeMs)} ms, fdatasync ${fmtInt(seq.syncMs)} ms)`,
    );
    gc?.();
    loop = await fsyncLoop(FSYNC_LOOP_MS);
    console.log(`machine  4 KiB write + fdatasync loop (growing file): ${fmtInt(loop.fsyncsPerSec)} fsyncs/s  (${loop.meanMs.toFixed(3)} ms each)`);
  }

  const cases = buildCases();
  const results: CaseResult[] = [];
  for (let i = 0; i < cases.length; i++) {
    gc?.();
    const r = await runCase(cases[i]!, i);
    results.push(r);
    console.log(caseLine(r));
  }

  const targets = evalTargets(results, seq);
  console.log('');
  for (const t of targets) {
    console.log(`${t.status}  ${t.name}  [${t.mode}]  ratio ${t.ratio === null ? '-' : t.ratio.toFixed(2)}  ${t.detail}`);
  }
  console.log('');
  for (const l of markdownTable(results)) console.log(l);
  console.log('');
  console.log(JSON.stringify({ machine, settings, machineLimits: { sequentialWrite: seq, fsyncLoop: loop }, cases: results, targets }));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
