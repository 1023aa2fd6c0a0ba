/**
 * Shared pieces for the reliability integration tests (TTL, dead-lettering, length limits,
 * priorities, single active consumer, delivery limits, consistent hashing, delayed delivery,
 * retries, deduplication, policies).
 *
 * The same test files run against Sluice (default: an in-process broker on a temp data dir) or
 * against any external broker when SLUICE_TEST_AMQP_URL is set, e.g. a local RabbitMQ 3.10:
 *
 *   SLUICE_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672 \
 *   SLUICE_TEST_RABBITMQCTL=rabbitmqctl \
 *     node --test dist/test/integration/amqp-reliability-*.test.js
 *
 * That is how the expectations were checked against RabbitMQ. Tests that need a restart or a
 * Sluice-only feature skip themselves against an external URL. Names carry a random suffix so
 * runs against a shared RabbitMQ never collide, and every test deletes what it declared.
 *
 * Policies: against Sluice they are passed to startBroker's `policies` option; against an
 * external RabbitMQ they are set with `rabbitmqctl set_policy` when SLUICE_TEST_RABBITMQCTL names
 * the rabbitmqctl binary (the policy tests skip otherwise).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { after, before, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfirmChannel, GetMessage, Options } from 'amqplib';
import { startBroker, type StartedBroker } from '../../src/index.js';
import { channel, closeQuietly, connect, type Channel, type ChannelModel, type ConsumeMessage } from './amqp-client.js';
import { removeDir, sleep, tempDataDir, waitFor } from './test-broker.js';

export { sleep, waitFor };
export type { Channel, ChannelModel, ConsumeMessage, GetMessage };

/** A policy as RabbitMQ's `rabbitmqctl set_policy` and Sluice's `policies` option take it. */
export interface PolicyDef {
  vhost: string;
  name: string;
  pattern: string;
  'apply-to': 'queues' | 'exchanges' | 'all';
  priority: number;
  definition: Record<string, unknown>;
}

export interface Target {
  /** The AMQP URL to connect to (changes after restart(): the port is picked afresh). */
  readonly url: string;
  /** True when the tests run against SLUICE_TEST_AMQP_URL rather than an in-process Sluice. */
  readonly external: boolean;
  /** The in-process broker, for checks that have no AMQP method (undefined when external). */
  readonly broker: StartedBroker | undefined;
  /** Whether the requested policies are in force (always true for Sluice). */
  readonly policiesApplied: boolean;
  close(): Promise<void>;
  /** Stops the broker and starts it again on the same data dir; only for the in-process Sluice. */
  restart?: () => Promise<void>;
}

export interface TargetOptions {
  policies?: PolicyDef[];
}

const EXTERNAL_URL = process.env['SLUICE_TEST_AMQP_URL'];
const RABBITMQCTL = process.env['SLUICE_TEST_RABBITMQCTL'];

export const isExternal = (): boolean => EXTERNAL_URL !== undefined && EXTERNAL_URL !== '';

export async function startTarget(opts: TargetOptions = {}): Promise<Target> {
  if (isExternal()) return externalTarget(EXTERNAL_URL!, opts);
  const dataDir = tempDataDir('sluice-rel-');
  // Built as a variable, not a literal at the call site: `policies` is being added to the
  // broker's options and the type may not list it yet.
  const options: Record<string, unknown> = { dataDir, amqpPort: 0, host: '127.0.0.1', quiet: true };
  if (opts.policies) options['policies'] = opts.policies;
  const start = (): Promise<StartedBroker> => startBroker(options as Parameters<typeof startBroker>[0]);
  let b: StartedBroker | undefined = await start();
  let closed = false;
  return {
    get url() {
      return b!.amqpUrl;
    },
    external: false,
    get broker() {
      return b;
    },
    policiesApplied: true,
    async close() {
      if (closed) return;
      closed = true;
      await b?.close();
      removeDir(dataDir);
    },
    async restart() {
      await b!.close();
      b = undefined;
      b = await start();
    },
  };
}

export interface SuiteTargetHooks {
  /** Runs in before(), right after the target has started. */
  setup?: (target: Target) => Promise<void>;
  /** Runs in after(), right before the target is closed. */
  teardown?: (target: Target) => Promise<void>;
}

/**
 * One target for the enclosing describe(): started in a before() hook and closed in an after()
 * hook, both registered here (call it directly inside the describe callback). The returned
 * handle reads through to the started target, so tests pass it wherever a Target goes; it throws
 * if used before the hook has run.
 */
export function suiteTarget(opts: TargetOptions = {}, hooks: SuiteTargetHooks = {}): Target {
  let started: Target | undefined;
  const get = (): Target => {
    if (started === undefined) throw new Error('suiteTarget: the target is not started yet (use it inside a test or hook)');
    return started;
  };
  const handle: Target = {
    get url() {
      return get().url;
    },
    get external() {
      return get().external;
    },
    get broker() {
      return get().broker;
    },
    get policiesApplied() {
      return get().policiesApplied;
    },
    close: () => get().close(),
    get restart() {
      return get().restart;
    },
  };
  before(async () => {
    started = await startTarget(opts);
    await hooks.setup?.(handle);
  });
  after(async () => {
    if (started === undefined) return;
    await hooks.teardown?.(handle);
    await started.close();
  });
  return handle;
}

function externalTarget(url: string, opts: TargetOptions): Target {
  const policies = opts.policies ?? [];
  let policiesApplied = policies.length === 0;
  if (policies.length > 0 && RABBITMQCTL) {
    for (const p of policies) {
      execFileSync(RABBITMQCTL, ['set_policy', '-p', p.vhost, '--priority', String(p.priority), '--apply-to', p['apply-to'], p.name, p.pattern, JSON.stringify(p.definition)], { stdio: 'ignore' });
    }
    policiesApplied = true;
  }
  return {
    url,
    external: true,
    broker: undefined,
    policiesApplied,
    async close() {
      if (policies.length > 0 && RABBITMQCTL) {
        for (const p of policies) {
          try {
            execFileSync(RABBITMQCTL, ['clear_policy', '-p', p.vhost, p.name], { stdio: 'ignore' });
          } catch {
            // already gone
          }
        }
      }
    },
  };
}

/** Skips the test (returns true) when the target is an external broker. */
export function sluiceOnly(t: TestContext, target: Target, why: string): boolean {
  if (!target.external) return false;
  t.skip(`Sluice-only: ${why}`);
  return true;
}

/** A unique, readable name: `<prefix>.<8 hex>`. */
export const uid = (prefix: string): string => `${prefix}.${randomBytes(4).toString('hex')}`;

/**
 * One test's connections and declarations. Everything declared through it is deleted on
 * dispose() (which t.after calls), so runs against a long-lived RabbitMQ leave nothing behind.
 */
export class Scope {
  #conns: ChannelModel[] = [];
  #queues = new Set<string>();
  #exchanges = new Set<string>();
  #url: () => string;
  /** Every channel and connection error seen, reported as test diagnostics afterwards. */
  readonly errors: string[] = [];
  conn!: ChannelModel;
  /**
   * A confirm channel on the scope's first connection: `await s.ch.waitForConfirms()` after
   * publishing makes sure the broker has enqueued the messages before the test counts them.
   */
  ch!: ConfirmChannel;

  constructor(url: () => string) {
    this.#url = url;
  }

  static async open(t: TestContext, target: Target): Promise<Scope> {
    const s = new Scope(() => target.url);
    t.after(async () => {
      for (const e of s.errors) t.diagnostic(e);
      await s.dispose();
    });
    s.conn = await s.connect();
    s.ch = await s.confirmChannel(s.conn);
    return s;
  }

  async connect(): Promise<ChannelModel> {
    const c = await connect(this.#url());
    c.on('error', (e: Error) => this.errors.push(`connection error: ${e.message}`));
    this.#conns.push(c);
    return c;
  }

  /** A new channel on the scope's connection (or on `c`). */
  async channel(c: ChannelModel = this.conn): Promise<Channel> {
    const ch = await channel(c);
    ch.on('error', (e: Error) => this.errors.push(`channel error: ${e.message}`));
    return ch;
  }

  async confirmChannel(c: ChannelModel = this.conn): Promise<ConfirmChannel> {
    const ch = await c.createConfirmChannel();
    ch.on('error', (e: Error) => this.errors.push(`channel error: ${e.message}`));
    return ch;
  }

  /** Declares a queue named `<prefix>.<random>` (or exactly `name` if it has no room for one). */
  async queue(prefix: string, options: Options.AssertQueue = {}, ch: Channel = this.ch): Promise<string> {
    const name = uid(prefix);
    await ch.assertQueue(name, { durable: false, ...options });
    this.#queues.add(name);
    return name;
  }

  /** Registers a queue declared elsewhere (e.g. through a policy-matched name) for deletion. */
  own(kind: 'queue' | 'exchange', name: string): string {
    (kind === 'queue' ? this.#queues : this.#exchanges).add(name);
    return name;
  }

  async exchange(prefix: string, type: string, options: Options.AssertExchange = {}, ch: Channel = this.ch): Promise<string> {
    const name = uid(prefix);
    await ch.assertExchange(name, type, { durable: false, ...options });
    this.#exchanges.add(name);
    return name;
  }

  /** Closes the scope's connections but keeps its declarations (e.g. before a restart). */
  async closeConnections(): Promise<void> {
    for (const c of this.#conns) await closeQuietly(c);
    this.#conns = [];
  }

  /** Reopens the scope's connection and confirm channel (after a restart). */
  async reopen(): Promise<void> {
    await this.closeConnections();
    this.conn = await this.connect();
    this.ch = await this.confirmChannel(this.conn);
  }

  async dispose(): Promise<void> {
    await this.closeConnections();
    if (this.#queues.size === 0 && this.#exchanges.size === 0) return;
    let c: ChannelModel | undefined;
    try {
      c = await connect(this.#url());
      for (const q of this.#queues) {
        const ch = await channel(c);
        await ch.deleteQueue(q).catch(() => undefined);
        await closeQuietly(ch);
      }
      for (const x of this.#exchanges) {
        const ch = await channel(c);
        await ch.deleteExchange(x).catch(() => undefined);
        await closeQuietly(ch);
      }
    } catch {
      // the broker may already be gone (a test that stopped it)
    } finally {
      await closeQuietly(c);
    }
  }
}

/** A delivery with the local time it arrived (performance.now()). */
export interface Timed {
  m: ConsumeMessage;
  at: number;
}

export const now = (): number => performance.now();

/** Consumes `queue` into an array of timed deliveries; `onMessage` runs for each, after it is recorded. */
export async function consumeTimed(
  ch: Channel,
  queue: string,
  options: Options.Consume & { onMessage?: (d: Timed) => void } = {},
): Promise<{ got: Timed[]; consumerTag: string }> {
  const got: Timed[] = [];
  const { onMessage, ...consumeOpts } = options;
  const { consumerTag } = await ch.consume(queue, (m) => {
    if (m === null) return;
    const d = { m, at: now() };
    got.push(d);
    onMessage?.(d);
  }, { noAck: true, ...consumeOpts });
  return { got, consumerTag };
}

export const text = (m: { content: Buffer }): string => m.content.toString();
export const texts = (ds: ReadonlyArray<Timed>): string[] => ds.map((d) => text(d.m));

export async function messageCount(ch: Channel, q: string): Promise<number> {
  return (await ch.checkQueue(q)).messageCount;
}

/** Polls the queue's message count until it equals `n`. */
export function waitForCount(ch: Channel, q: string, n: number, ms = 5000): Promise<void> {
  let last = -1;
  return waitFor(async () => (last = await messageCount(ch, q)) === n, ms, `${n} messages in ${q}`).catch((e: Error) => {
    throw new Error(`${e.message} (last count ${last})`);
  });
}

/** basic.get (manual ack) polled until a message comes. */
export async function waitForGet(ch: Channel, q: string, ms = 5000): Promise<GetMessage> {
  let got: GetMessage | false = false;
  await waitFor(async () => (got = await ch.get(q)) !== false, ms, `a message in ${q}`);
  return got as unknown as GetMessage;
}

/** basic.get (no ack) until the queue is empty: every message it held, in queue order. */
export async function drainQueue(ch: Channel, q: string): Promise<GetMessage[]> {
  const out: GetMessage[] = [];
  for (;;) {
    const m = await ch.get(q, { noAck: true });
    if (m === false) return out;
    out.push(m);
  }
}

/**
 * Resolves with the reply code of the channel error `op` provokes (406, 404, ...). The channel is
 * closed by then; use a fresh one afterwards.
 */
export async function channelErrorCode(ch: Channel, op: () => Promise<unknown>): Promise<number | undefined> {
  const closed = new Promise<Error & { code?: number }>((resolve) => ch.once('error', resolve));
  await assert.rejects(op());
  return (await closed).code;
}

/**
 * Whether a queue exists, checked on a throwaway channel (a passive declare of a missing queue
 * closes the channel with 404). Note: in RabbitMQ a passive declare counts as using the queue
 * and restarts its x-expires timer, so do not poll this faster than the expiry.
 */
export async function queueExists(c: ChannelModel, q: string): Promise<boolean> {
  const ch = await channel(c);
  try {
    await ch.checkQueue(q);
    await closeQuietly(ch);
    return true;
  } catch (e) {
    const code = (e as { code?: number }).code;
    if (code !== 404) throw e;
    return false;
  }
}

/** The entries of x-death as amqplib decodes them (timestamps are { '!': 'timestamp', value: seconds }). */
export interface XDeath {
  count: number;
  reason: string;
  queue: string;
  time: { '!': 'timestamp'; value: number };
  exchange: string;
  'routing-keys': string[];
  'original-expiration'?: string;
}

export function xDeath(m: { properties: { headers?: Record<string, unknown> } }): XDeath[] {
  const v = m.properties.headers?.['x-death'];
  assert.ok(Array.isArray(v), `x-death is an array (headers: ${JSON.stringify(m.properties.headers)})`);
  return v as XDeath[];
}

/**
 * Asserts the x-death array entry by entry against `expected` (without `time`), and that every
 * `time` is an AMQP timestamp (seconds) between `since` and now, give or take 2 s.
 */
export function assertXDeath(m: { properties: { headers?: Record<string, unknown> } }, expected: Array<Omit<XDeath, 'time'>>, sinceMs: number): void {
  const deaths = xDeath(m);
  const withoutTime = deaths.map(({ time: _t, ...rest }) => rest);
  assert.deepEqual(withoutTime, expected);
  for (const d of deaths) {
    assert.deepEqual(Object.keys(d.time).sort(), ['!', 'value'], `time is a timestamp: ${JSON.stringify(d.time)}`);
    assert.equal(d.time['!'], 'timestamp');
    assert.ok(Number.isInteger(d.time.value), 'timestamp in whole seconds');
    assert.ok(d.time.value >= Math.floor(sinceMs / 1000) - 2 && d.time.value <= Date.now() / 1000 + 2, `time ${d.time.value} is about now`);
  }
}

/** The x-first-death-* headers RabbitMQ 3.10 sets once, on a message's first death. */
export function firstDeath(m: { properties: { headers?: Record<string, unknown> } }): { reason: unknown; queue: unknown; exchange: unknown } {
  const h = m.properties.headers ?? {};
  return { reason: h['x-first-death-reason'], queue: h['x-first-death-queue'], exchange: h['x-first-death-exchange'] };
}

/** Declares a fanout "dead letter" exchange with one queue bound to it, consumed into an array. */
export async function deadLetterSink(s: Scope, prefix = 'dlx'): Promise<{ exchange: string; queue: string; got: Timed[] }> {
  const exchange = await s.exchange(prefix, 'fanout');
  const queue = await s.queue(`${prefix}.sink`);
  await s.ch.bindQueue(queue, exchange, '');
  const sinkCh = await s.channel();
  const { got } = await consumeTimed(sinkCh, queue);
  return { exchange, queue, got };
}

/** Publishes with confirms and returns, per message, whether the broker acked (true) or nacked (false) it. */
export function publishConfirmed(ch: ConfirmChannel, exchange: string, rk: string, body: string, options: Options.Publish = {}): Promise<boolean> {
  return new Promise((resolve) => {
    ch.publish(exchange, rk, Buffer.from(body), options, (err) => resolve(err === null || err === undefined));
  });
}

/** Runs a test body against its own broker target, closing it afterwards. */
export async function withTarget<T>(opts: TargetOptions, fn: (target: Target) => Promise<T>): Promise<T> {
  const target = await startTarget(opts);
  try {
    return await fn(target);
  } finally {
    await target.close();
  }
}

/**
 * Runs `fn` with a Scope on a broker of its own (a fresh in-process Sluice on its own data dir,
 * so Sluice-only tests may restart it). `restart()` closes the scope's connections, restarts the
 * broker on the same data dir and reopens them. The connections and the broker are closed
 * afterwards; the declarations go with the data dir.
 */
export function withRestartableScope(fn: (s: Scope, restart: () => Promise<void>) => Promise<void>): Promise<void> {
  return withTarget({}, async (own) => {
    const s = new Scope(() => own.url);
    await s.reopen();
    const restart = async (): Promise<void> => {
      await s.closeConnections();
      await own.restart!();
      await s.reopen();
    };
    try {
      await fn(s, restart);
    } finally {
      await s.closeConnections();
    }
  });
}

/** Lower bound check for timers: `at` is no earlier than `from + delay` (less a few ms of clock slack). */
export function assertNotEarly(at: number, from: number, delay: number, what: string, slackMs = 5): void {
  assert.ok(at - from >= delay - slackMs, `${what}: arrived after ${(at - from).toFixed(1)} ms, expected >= ${delay} ms`);
}

/** Upper bound check: `at` is less than `lateMs` after `from + delay`. */
export function assertNotLate(at: number, from: number, delay: number, what: string, lateMs = 500): void {
  assert.ok(at - from < delay + lateMs, `${what}: arrived after ${(at - from).toFixed(1)} ms, expected < ${delay + lateMs} ms`);
}
