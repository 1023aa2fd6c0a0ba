/**
 * The broker under test as a child process (`node dist/src/cli/main.js start`), as an operator
 * runs it, so its RSS is its own and SIGKILL is a real crash. Also reads RSS from
 * /proc/<pid>/status and samples it on a timer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

/** dist/bench/delayed/ → dist/src/cli/main.js */
export const CLI_PATH = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface BrokerChild {
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
  /** Milliseconds from spawn to the "listening on" line (includes recovery). */
  startMs: number;
  /** Resolves with the exit code, or the signal name, when the process has exited. */
  exited: Promise<number | string | null>;
  /** Everything the process wrote to stderr (and stdout lines other than the banner). */
  output(): string;
}

/** Extra node flags for the broker (diagnosis, e.g. --trace-gc), space-separated. */
const NODE_FLAGS = (process.env.BENCH_BROKER_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');

export function spawnBroker(dataDir: string, logLevel = 'warn'): Promise<BrokerChild> {
  const t = performance.now();
  const child = spawn(process.execPath, [...NODE_FLAGS, CLI_PATH, 'start', '--data-dir', dataDir, '--amqp-port', '0', '--host', '127.0.0.1', '--log-level', logLevel], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
  let out = '';
  // BENCH_BROKER_LOG=<file> keeps everything the broker writes (stdout and stderr), for diagnosis.
  const logFile = process.env.BENCH_BROKER_LOG;
  if (logFile !== undefined) {
    child.stdout!.on('data', (d: Buffer) => appendFileSync(logFile, d));
    child.stderr!.on('data', (d: Buffer) => appendFileSync(logFile, d));
  }
  // Both pipes are drained for the whole run: a full pipe would block the broker.
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.length > 1 << 20) out = out.slice(-(1 << 19));
  });
  return new Promise((resolve, reject) => {
    let banner = '';
    let found = false;
    const timer = setTimeout(() => reject(new Error(`broker did not start within 120 s: ${banner}${out}`)), 120_000);
    child.stdout!.on('data', (d: Buffer) => {
      if (found) {
        out += d.toString();
        return;
      }
      banner += d.toString();
      const m = /listening on ([\d.]+):(\d+)/.exec(banner);
      if (m) {
        found = true;
        clearTimeout(timer);
        const port = Number(m[2]);
        resolve({
          child,
          pid: child.pid!,
          port,
          url: `amqp://guest:guest@127.0.0.1:${port}`,
          startMs: performance.now() - t,
          exited,
          output: () => out,
        });
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      if (!found) reject(new Error(`broker exited with ${code ?? sig} before listening: ${banner}${out}`));
    });
  });
}

/** VmRSS (or another field such as VmHWM) of a process in bytes, or -1 if it is gone. */
export function procStatusBytes(pid: number, field = 'VmRSS'): number {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s);
    return m ? Number(m[1]) * 1024 : -1;
  } catch {
    return -1;
  }
}

/** utime + stime of a process in seconds (/proc/<pid>/stat, USER_HZ = 100), or -1. */
export function procCpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return -1;
  }
}

/**
 * Samples a process's RSS every `intervalMs`; keeps the peak and a coarse series, and the
 * machine's 1-minute load average (other work on the machine shows up as lateness).
 */
export class RssSampler {
  readonly #pid: number;
  readonly #timer: NodeJS.Timeout;
  readonly #t0: number;
  peak = 0;
  last = 0;
  samples = 0;
  /** [seconds since start, RSS MiB] every `seriesEveryMs`. */
  readonly series: Array<[number, number]> = [];
  #lastSeriesAt = -Infinity;
  loadMax = 0;
  #loadSum = 0;
  #loadN = 0;

  constructor(pid: number, t0: number, intervalMs = 250, seriesEveryMs = 5000) {
    this.#pid = pid;
    this.#t0 = t0;
    const tick = (): void => {
      const rss = procStatusBytes(this.#pid);
      if (rss < 0) return;
      this.samples++;
      this.last = rss;
      if (rss > this.peak) this.peak = rss;
      const load = loadavg()[0]!;
      this.#loadSum += load;
      this.#loadN++;
      if (load > this.loadMax) this.loadMax = load;
      const now = Date.now();
      if (now - this.#lastSeriesAt >= seriesEveryMs) {
        this.#lastSeriesAt = now;
        this.series.push([Math.round((now - this.#t0) / 100) / 10, mib(rss)]);
      }
    };
    tick();
    this.#timer = setInterval(tick, intervalMs);
  }

  get loadMean(): number {
    return this.#loadN ? Math.round((this.#loadSum / this.#loadN) * 100) / 100 : NaN;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

export function mib(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
