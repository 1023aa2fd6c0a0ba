/**
 * Sluice as a child process, as a user runs it: `node dist/src/cli/main.js start --data-dir
 * DIR --amqp-port 0 --host 127.0.0.1`, the port read from its "listening on" line, stopped with
 * SIGTERM (which also makes `node --cpu-prof` write its profile).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface SluiceStartOptions {
  mainJs: string;
  dataDir: string;
  /** Directory for a V8 CPU profile of the broker, or null. */
  cpuProfDir: string | null;
  logFile: string;
}

export class SluiceProcess {
  port = 0;
  #child: ChildProcess | null = null;
  #exited = true;
  #opts: SluiceStartOptions;

  constructor(opts: SluiceStartOptions) {
    this.#opts = opts;
  }

  get pid(): number {
    return this.#child?.pid ?? 0;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const o = this.#opts;
    rmSync(o.dataDir, { recursive: true, force: true });
    mkdirSync(o.dataDir, { recursive: true });
    const nodeArgs = o.cpuProfDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`];
    const child = spawn(process.execPath, [...nodeArgs, o.mainJs, 'start', '--data-dir', o.dataDir, '--amqp-port', '0', '--host', '127.0.0.1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    this.#exited = false;
    const log = createWriteStream(o.logFile, { flags: 'a' });
    child.stderr!.pipe(log);
    this.port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('sluice did not report its port within 30 s')), 30_000);
      const onData = (d: Buffer): void => {
        buf += d.toString('utf8');
        const m = /listening on [^:\s]+:(\d+)/.exec(buf);
        if (m !== null) {
          clearTimeout(timer);
          child.stdout!.off('data', onData);
          log.write(buf);
          child.stdout!.pipe(log);
          resolve(Number(m[1]));
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code, sig) => {
        this.#exited = true;
        clearTimeout(timer);
        reject(new Error(`sluice exited during startup (${code ?? sig}); log: ${o.logFile}\n${buf}`));
      });
    });
  }

  /** SIGTERM and wait (SIGKILL after 30 s). Returns the exit code or signal. */
  async stop(): Promise<string> {
    const child = this.#child;
    if (child === null || this.#exited || child.exitCode !== null) return 'not running';
    return new Promise((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        this.#exited = true;
        resolve(String(code ?? sig));
      });
      child.kill('SIGTERM');
    });
  }

  stopNow(): void {
    if (this.#child !== null && !this.#exited && this.#child.exitCode === null) this.#child.kill('SIGKILL');
  }

  remove(): void {
    rmSync(join(this.#opts.dataDir), { recursive: true, force: true });
  }
}
