/**
 * Starting a real broker for integration tests: an in-process broker on a fresh temp data dir,
 * or the CLI as a child process (for kill -9 tests). Everything listens on 127.0.0.1 and an
 * ephemeral port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBroker, type StartedBroker } from '../../src/index.js';

export function tempDataDir(prefix = 'sluice-it-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export type TestBroker = StartedBroker & { dataDir: string };

export async function startTestBroker(dataDir = tempDataDir()): Promise<TestBroker> {
  const b = await startBroker({ dataDir, amqpPort: 0, host: '127.0.0.1', quiet: true });
  return Object.assign(b, { dataDir });
}

export interface BrokerProcess {
  child: ChildProcess;
  port: number;
  url: string;
  /** Resolves when the process has exited. */
  exited: Promise<number | null>;
}

/** Runs `node dist/src/cli/main.js start` and waits for its "listening on" line. */
export function spawnCliBroker(dataDir: string, cliPath: string): Promise<BrokerProcess> {
  const child = spawn(process.execPath, [cliPath, 'start', '--data-dir', dataDir, '--amqp-port', '0', '--host', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`broker did not start: ${out}${err}`)), 20000);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on [\d.]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        const port = Number(m[1]);
        resolve({ child, port, url: `amqp://guest:guest@127.0.0.1:${port}`, exited });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code} before listening: ${out}${err}`));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const MIN_WAIT_MS = 30_000;

/**
 * Polls `cond` until it holds. The deadline only bounds a failing test, so it is never shorter
 * than MIN_WAIT_MS: CI runs on shared two-core machines where a loaded broker takes seconds for
 * what takes milliseconds when idle, and a passing test waits no longer for it.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + Math.max(ms, MIN_WAIT_MS);
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
