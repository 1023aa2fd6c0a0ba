/**
 * A throwaway RabbitMQ node for the side-by-side benchmark: the Debian rabbitmq-server run as
 * the current user under its own node name, on free ports, with its data, logs, cookie (HOME),
 * config, env file and plugin list in a temporary directory, so it shares nothing with a
 * system node that may be running. Installs nothing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** The scripts themselves, not the /usr/sbin wrappers (which su to the rabbitmq user). */
const BIN_DIR = '/usr/lib/rabbitmq/bin';
export const NODE_NAME = 'sluicebench@localhost';

export function rabbitmqInstalled(): boolean {
  const r = spawnSync('sh', ['-c', 'command -v rabbitmq-server'], { encoding: 'utf8' });
  return r.status === 0 && existsSync(join(BIN_DIR, 'rabbitmq-server')) && existsSync(join(BIN_DIR, 'rabbitmqctl'));
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class RabbitNode {
  readonly dir: string;
  port = 0;
  distPort = 0;
  pid = 0;
  version = '';
  #child: ChildProcess | null = null;
  #exited = true;
  #env: NodeJS.ProcessEnv = {};

  constructor(dir: string) {
    this.dir = dir;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  #ctl(args: string[], timeoutMs = 60_000): { ok: boolean; out: string } {
    const r = spawnSync(join(BIN_DIR, 'rabbitmqctl'), ['-n', NODE_NAME, ...args], { env: this.#env, encoding: 'utf8', timeout: timeoutMs });
    return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
  }

  /** Starts a node with an empty data directory and waits until it accepts connections. */
  async start(): Promise<void> {
    rmSync(this.dir, { recursive: true, force: true });
    for (const d of ['home', 'mnesia', 'log']) mkdirSync(join(this.dir, d), { recursive: true });
    writeFileSync(join(this.dir, 'enabled_plugins'), '[].\n');
    writeFileSync(join(this.dir, 'rabbitmq-env.conf'), '');
    writeFileSync(join(this.dir, 'rabbitmq.conf'), '# defaults (side-by-side benchmark)\n');
    this.port = await freePort();
    do this.distPort = await freePort();
    while (this.distPort === this.port);
    this.#env = {
      ...process.env,
      HOME: join(this.dir, 'home'),
      RABBITMQ_NODENAME: NODE_NAME,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(this.dir, 'log'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
      RABBITMQ_CONF_ENV_FILE: join(this.dir, 'rabbitmq-env.conf'),
      RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq'),
    };
    const out = openSync(join(this.dir, 'log', 'stdout.txt'), 'a');
    const child = spawn(join(BIN_DIR, 'rabbitmq-server'), [], { env: this.#env, stdio: ['ignore', out, out] });
    this.#child = child;
    this.#exited = false;
    child.once('exit', () => (this.#exited = true));
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (this.#exited) throw new Error(`rabbitmq-server exited during startup; see ${join(this.dir, 'log')}`);
      if (Date.now() > deadline) throw new Error('rabbitmq-server did not start within 90 s');
      await sleep(1000);
      if (this.#ctl(['await_startup', '--timeout', '5'], 20_000).ok) break;
    }
    const pid = this.#ctl(['eval', 'os:getpid().']).out.replace(/"/g, '').trim();
    this.pid = Number(pid);
    const v = this.#ctl(['eval', 'rabbit_misc:version().']).out.replace(/"/g, '').trim();
    this.version = /^[0-9.]+$/.test(v) ? v : '';
  }

  /** rabbitmqctl stop; SIGTERM (then SIGKILL) to the Erlang VM if that fails. */
  async stop(): Promise<void> {
    if (this.#exited) return;
    this.#ctl(['stop'], 30_000);
    const deadline = Date.now() + 20_000;
    while (!this.#exited && Date.now() < deadline) await sleep(200);
    if (!this.#exited) this.stopNow();
  }

  /** Synchronous last resort for exit handlers. */
  stopNow(): void {
    if (this.#exited) return;
    for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
      try {
        if (this.pid > 0) process.kill(this.pid, sig);
        this.#child?.kill(sig);
      } catch {
        // already gone
      }
      if (sig === 'SIGTERM') spawnSync('sleep', ['2']);
    }
    this.#exited = true;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
