/**
 * The messaging model, protocol-neutral: vhosts, exchanges, queues, bindings, users, publish
 * and consume. Front-ends translate frames to these calls and BrokerErrors back to frames.
 * Definitions are stored in the MetaStore; a declare resolves only once it is durable.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  FileMetaStore,
  FileScheduleStore,
  PriorityQueueStore,
  Storage,
  type MetaStore,
  type QueueStore,
  type ScheduledEntry,
  type StorageOptions,
  type StorageRecoveryReport,
  type StoredMessage,
} from '../storage/mod.js';
import { BrokerError, accessRefused, notFound, precondition, resourceLocked } from './errors.js';
import { DedupCache } from './dedup/dedup-cache.js';
import { DEDUP_HEADER, DEDUP_TTL_HEADER, dedupKey, dedupTtl } from './dedup/dedup-key.js';
import { Exchange, EXCHANGE_TYPES, bindingId, destKey, validateExchangeArgs, type BindingDefinition, type DestinationKey, type ExchangeDefinition, type ExchangeType, type RoutableMessage } from './exchange/exchange.js';
import { argsEqual, argType, toJsonSafe } from './json-args.js';
import type { DeathReason, MessageFormat } from './message-format.js';
import { encodeStoredMessage, MessageFlags, StoredMessageView, storedBodySize, withStoredProps } from './message.js';
import { Policies, type PolicyDefinition } from './policy/policy.js';
import type { Consumer, ConsumerSink } from './queue/consumer.js';
import { checkQueueArgs, fmtArg } from './queue/queue-args.js';
import { resolveQueueSettings } from './queue/queue-settings.js';
import { NotEnqueued, Queue, type QueueDefinition, type QueueServices } from './queue/queue.js';
import { ScheduleRunner } from './schedule/schedule-runner.js';
import { decodeWork, delayGroup, encodeEnqueue, encodeExpire, encodeRoute, EXPIRY_GROUP, retryGroup } from './schedule/scheduled-work.js';
import { checkPassword, hashPassword, permits, type PermissionRecord, type UserRecord } from './users.js';
import { Vhost } from './vhost/vhost.js';

export interface BrokerOptions {
  dataDir: string;
  /** How message properties are read and amended (the AMQP front-end provides it). */
  format: MessageFormat;
  /** RabbitMQ-style policies (from the config file). */
  policies?: Array<Partial<PolicyDefinition> & Record<string, unknown>>;
  storage?: StorageOptions;
  /** Created when no user exists yet (RabbitMQ's guest/guest). */
  defaultUser?: { name: string; password: string };
  /** Users that may only connect from loopback (RabbitMQ's loopback_users). */
  loopbackUsers?: string[];
}

interface StoredQueueDef extends QueueDefinition {
  logName: string;
}

export interface DeclareQueueInput {
  name: string;
  passive?: boolean;
  durable?: boolean;
  exclusive?: boolean;
  autoDelete?: boolean;
  args?: Record<string, unknown>;
}

export interface DeclareExchangeInput {
  name: string;
  type: string;
  passive?: boolean;
  durable?: boolean;
  autoDelete?: boolean;
  internal?: boolean;
  args?: Record<string, unknown>;
}

export interface PublishInput {
  exchange: string;
  routingKey: string;
  props: Buffer;
  body: Buffer;
  persistent: boolean;
}

export interface PublishResult {
  /** Queues the message went to (a delayed message counts as routed). */
  routed: number;
  /** Whether the confirm must wait for Broker.flushed() (persistent message in a durable queue). */
  needsFlush: boolean;
  /** A queue refused it (x-overflow reject-publish): the confirm is a nack. */
  rejected: boolean;
}

/** The message being routed; reused across publishes, headers decoded at most once. */
class Routable implements RoutableMessage {
  routingKey = '';
  props: Buffer = Buffer.alloc(0);
  #format: MessageFormat;
  #headers: Record<string, unknown> | undefined = undefined;
  #decoded = false;
  constructor(format: MessageFormat) {
    this.#format = format;
  }
  reset(routingKey: string, props: Buffer): this {
    this.routingKey = routingKey;
    this.props = props;
    this.#decoded = false;
    this.#headers = undefined;
    return this;
  }
  headers(): Record<string, unknown> | undefined {
    if (!this.#decoded) {
      this.#headers = this.#format.headers(this.props);
      this.#decoded = true;
    }
    return this.#headers;
  }
  property(name: string): unknown {
    return this.#format.property(this.props, name);
  }
}

export interface ConsumeInput {
  queue: string;
  tag: string;
  noAck: boolean;
  exclusive: boolean;
  priority?: number;
  args?: Record<string, unknown>;
  sink: ConsumerSink;
  connectionId: number;
}

const qkey = (vhost: string, name: string): string => `${vhost}\u0000${name}`;
const EMPTY = Buffer.alloc(0);
const DEDUP_LOG_PREFIX = 'dedup/';
const dedupLogName = (vhost: string, exchange: string): string => `${DEDUP_LOG_PREFIX}${encodeURIComponent(vhost)}/${encodeURIComponent(exchange)}`;
/**
 * How far back from the end of each queue's log recovery looks for fire marks. A mark matters
 * only until the done marks of its batch are stored, one commit round later (milliseconds);
 * ten seconds covers rounds stalled by a very slow disk.
 */
const FIRE_MARK_WINDOW_MS = 10_000;
/** The level logs of a priority queue are "<logName>#p<level>". */
const PRIORITY_LEVEL_SUFFIX = /#p\d+$/;

export class Broker {
  readonly storage: Storage;
  readonly meta: MetaStore;
  readonly recovery: StorageRecoveryReport;
  readonly format: MessageFormat;
  readonly policies = new Policies();
  readonly #vhosts = new Map<string, Vhost>();
  readonly #loopbackUsers: Set<string>;
  /** Queues by their incarnation id (store log name), for schedule entries. */
  readonly #queuesById = new Map<string, Queue>();
  readonly #services: QueueServices;
  readonly #routable: Routable;
  #delays!: ScheduleRunner;
  #expiry!: ScheduleRunner;
  readonly #dedup = new Map<Exchange, DedupCache>();
  /** Queues fired into by the current batch of delayed entries, with the entry ids. */
  readonly #firedInto = new Map<Queue, number[]>();
  /** After an unclean stop: entries that already reached some queues before it (#readFireMarks). */
  #alreadyFired: Map<number, Set<string>> | null = null;
  #nextConnectionId = 1;
  #closed = false;
  /** Where errors nobody awaits go (a failed scheduled delivery); the server sets a logger. */
  onError: (err: unknown, what: string) => void = () => undefined;

  private constructor(storage: Storage, meta: MetaStore, recovery: StorageRecoveryReport, opts: BrokerOptions) {
    this.storage = storage;
    this.meta = meta;
    this.recovery = recovery;
    this.format = opts.format;
    this.#routable = new Routable(opts.format);
    this.#loopbackUsers = new Set(opts.loopbackUsers ?? ['guest']);
    this.policies.set((opts.policies ?? []).map((p) => Policies.normalise(p)));
    this.#services = {
      format: opts.format,
      now: Date.now,
      deadLetter: (q, payload, flags, reason) => this.#deadLetter(q, payload, flags, reason),
      retry: (q, payload, flags, attempt, delayMs) => this.#retry(q, payload, flags, attempt, delayMs),
      expired: (q) => void this.#deleteQueue(this.#vhosts.get(q.def.vhost)!, q).catch((e: unknown) => this.onError(e, 'queue expiry')),
      unused: (q) => void this.#deleteQueue(this.#vhosts.get(q.def.vhost)!, q).catch((e: unknown) => this.onError(e, 'auto-delete')),
    };
  }

  static async open(opts: BrokerOptions): Promise<Broker> {
    const { storage, report } = await Storage.open(join(opts.dataDir, 'storage'), opts.storage);
    let meta: MetaStore;
    let b: Broker;
    try {
      meta = (await FileMetaStore.open(join(opts.dataDir, 'definitions'))).store;
    } catch (e) {
      await storage.close();
      throw e;
    }
    try {
      b = new Broker(storage, meta, report, opts);
      await b.#load(opts);
    } catch (e) {
      await meta.close().catch(() => undefined);
      await storage.close().catch(() => undefined);
      throw e;
    }
    return b;
  }

  async #load(opts: BrokerOptions): Promise<void> {
    if (this.meta.all('vhost').size === 0) await this.meta.put('vhost', '/', { name: '/' });
    if (this.meta.all('user').size === 0) {
      const u = opts.defaultUser ?? { name: 'guest', password: 'guest' };
      await this.addUser(u.name, u.password, ['administrator']);
      await this.setPermissions({ user: u.name, vhost: '/', configure: '.*', write: '.*', read: '.*' });
    }
    for (const name of this.meta.all('vhost').keys()) this.#vhosts.set(name, new Vhost(name));
    const dedupLogs = new Set<string>();
    for (const def of this.meta.all<ExchangeDefinition>('exchange').values()) {
      const vh = this.#vhosts.get(def.vhost);
      if (vh === undefined) continue;
      const ex = new Exchange(def);
      vh.exchanges.set(def.name, ex);
      if (ex.dedup !== null) {
        await this.#openDedup(ex);
        dedupLogs.add(def.dedupLog ?? dedupLogName(def.vhost, def.name));
      }
    }
    // Caches of non-durable exchanges go with them.
    for (const name of this.storage.logNames()) {
      if (name.startsWith(DEDUP_LOG_PREFIX) && !dedupLogs.has(name)) await this.storage.deleteLog(name);
    }
    const keep = new Set<string>();
    const orphaned = new Set<string>();
    for (const def of [...this.meta.all<StoredQueueDef>('queue').values()]) {
      const vh = this.#vhosts.get(def.vhost);
      if (vh === undefined) continue;
      if (def.exclusive) {
        // Its owning connection died with the previous process (a clean stop deletes it first).
        orphaned.add(qkey(def.vhost, def.name));
        await this.meta.delete('queue', qkey(def.vhost, def.name));
        continue;
      }
      keep.add(def.logName);
      vh.queues.set(def.name, await this.#openQueue(def, null));
      // The default exchange's binding is implicit and never stored (declareQueue adds it in memory).
      vh.exchanges.get('')!.bind({ vhost: def.vhost, source: '', destinationType: 'queue', destination: def.name, routingKey: def.name, args: {} });
    }
    for (const b of [...this.meta.all<BindingDefinition>('binding').values()]) {
      if (b.destinationType === 'queue' && orphaned.has(qkey(b.vhost, b.destination))) await this.meta.delete('binding', bindingId(b));
      else this.#vhosts.get(b.vhost)?.exchanges.get(b.source)?.bind(b);
    }
    // Logs of non-durable queues (and of queues deleted mid-way) do not outlive the broker.
    for (const name of this.storage.logNames()) {
      if (name.startsWith('queue/') && !keep.has(name.replace(PRIORITY_LEVEL_SUFFIX, ''))) await this.storage.deleteLog(name);
    }
    // Delays and retries must survive kill -9 ('fsync'); expiry entries only save a wait for the
    // head, so the page cache is enough for them.
    const delays = await FileScheduleStore.open(this.storage, 'delays', { durability: 'fsync' });
    const expiry = await FileScheduleStore.open(this.storage, 'expiry', { durability: 'os' });
    this.#delays = new ScheduleRunner(delays.store, (e) => this.#fireDelay(e));
    this.#delays.afterBatch = () => this.#markFired();
    // Entries due before the restart may have fired in the last rounds before a kill -9 with
    // their done marks lost: the fire marks in the queues say where they already went.
    const next = delays.store.nextDueAt();
    if (next !== null && next <= Date.now() + 1000) this.#alreadyFired = await this.#readFireMarks();
    this.#expiry = new ScheduleRunner(expiry.store, (e) => this.#fireExpiry(e));
    this.#delays.onError = (e) => this.onError(e, 'delayed delivery');
    this.#expiry.onError = (e) => this.onError(e, 'message expiry');
    this.#delays.start();
    this.#expiry.start();
  }

  async #openQueue(def: StoredQueueDef, owner: number | null): Promise<Queue> {
    const durability = def.durable ? 'fsync' : 'none';
    const settings = resolveQueueSettings(def.args, this.policies.match(def.vhost, 'queues', def.name));
    let store: QueueStore;
    let recoveredBelow: number[];
    if (settings.maxPriority !== undefined && settings.maxPriority > 0) {
      // One store per level (priority-queue-store.ts); level logs are "<logName>#p<level>".
      const levels: QueueStore[] = [];
      recoveredBelow = [];
      for (let i = 0; i <= settings.maxPriority; i++) {
        const name = `${def.logName}#p${i}`;
        levels.push((await this.storage.openQueue(name, { durability })).store);
        recoveredBelow.push(this.storage.getLog(name)!.nextOffset);
      }
      store = new PriorityQueueStore(def.logName, levels);
    } else {
      store = (await this.storage.openQueue(def.logName, { durability })).store;
      recoveredBelow = [this.storage.getLog(def.logName)!.nextOffset];
    }
    const q = new Queue(def, def.logName, store, settings, this.#services, owner, recoveredBelow);
    await q.recover();
    this.#queuesById.set(q.id, q);
    return q;
  }

  async #deleteQueueLogs(logName: string): Promise<void> {
    for (const name of this.storage.logNames()) {
      if (name === logName || name.startsWith(`${logName}#p`)) await this.storage.deleteLog(name);
    }
  }

  // ---- users and access

  async addUser(name: string, password: string, tags: string[] = []): Promise<void> {
    const rec: UserRecord = { name, passwordHash: hashPassword(password), tags };
    await this.meta.put('user', name, rec);
  }

  async setPermissions(p: PermissionRecord): Promise<void> {
    await this.meta.put('permission', `${p.user}\u0000${p.vhost}`, p);
  }

  async addVhost(name: string): Promise<void> {
    if (this.#vhosts.has(name)) return;
    await this.meta.put('vhost', name, { name });
    this.#vhosts.set(name, new Vhost(name));
  }

  /** Checks a login; `loopback` says whether the client connected from 127.0.0.0/8 or ::1. */
  authenticate(user: string, password: string, loopback: boolean): UserRecord {
    const rec = this.meta.get<UserRecord>('user', user);
    if (rec === undefined || !checkPassword(password, rec.passwordHash)) {
      throw new BrokerError('access-refused', `ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.`, 'connection');
    }
    if (!loopback && this.#loopbackUsers.has(user)) {
      throw new BrokerError('access-refused', `ACCESS_REFUSED - user '${user}' can only connect via localhost`, 'connection');
    }
    return rec;
  }

  /** The vhost a connection opens, if the user has permissions there (530 otherwise). */
  openVhost(user: string, vhost: string): void {
    if (!this.#vhosts.has(vhost)) {
      throw new BrokerError('not-allowed', `NOT_ALLOWED - vhost ${vhost} not found`, 'connection');
    }
    if (this.#permission(user, vhost) === undefined) {
      throw new BrokerError('not-allowed', `NOT_ALLOWED - access to vhost '${vhost}' refused for user '${user}'`, 'connection');
    }
  }

  #permission(user: string, vhost: string): PermissionRecord | undefined {
    return this.meta.get<PermissionRecord>('permission', `${user}\u0000${vhost}`);
  }

  #check(user: string, vhost: string, perm: 'configure' | 'write' | 'read', kind: 'queue' | 'exchange', name: string): void {
    const p = this.#permission(user, vhost);
    const resource = kind === 'exchange' && name === '' ? 'amq.default' : name;
    if (p === undefined || !permits(p[perm], resource)) {
      throw accessRefused(`${perm} access to ${kind} '${resource}' in vhost '${vhost}' refused for user '${user}'`);
    }
  }

  nextConnectionId(): number {
    return this.#nextConnectionId++;
  }

  #vhost(name: string): Vhost {
    const v = this.#vhosts.get(name);
    if (v === undefined) throw new BrokerError('not-allowed', `NOT_ALLOWED - vhost ${name} not found`, 'connection');
    return v;
  }

  vhostNames(): string[] {
    return [...this.#vhosts.keys()];
  }

  // ---- exchanges

  async declareExchange(user: string, vhost: string, input: DeclareExchangeInput): Promise<void> {
    const vh = this.#vhost(vhost);
    const existing = vh.exchanges.get(input.name);
    if (input.passive) {
      if (existing === undefined) throw notFound(`exchange '${input.name}' in vhost '${vhost}'`);
      return;
    }
    if (!(EXCHANGE_TYPES as readonly string[]).includes(input.type)) {
      throw new BrokerError('command-invalid', `COMMAND_INVALID - unknown exchange type '${input.type}'`, 'connection');
    }
    if (input.name.startsWith('amq.') || input.name === '') {
      if (existing !== undefined && existing.def.type === input.type && input.durable === existing.def.durable) return;
      if (input.name === '') throw accessRefused('operation not permitted on the default exchange');
      throw accessRefused(`exchange name '${input.name}' contains reserved prefix 'amq.*'`);
    }
    const ae = input.args?.['alternate-exchange'];
    if (ae !== undefined && typeof ae !== 'string') {
      throw precondition(`invalid type '${argType(ae)}' for arg 'alternate-exchange' in exchange '${input.name}' in vhost '${vhost}'`);
    }
    this.#check(user, vhost, 'configure', 'exchange', input.name);
    const def: ExchangeDefinition = {
      vhost,
      name: input.name,
      type: input.type as ExchangeType,
      durable: input.durable ?? false,
      autoDelete: input.autoDelete ?? false,
      internal: input.internal ?? false,
      args: (toJsonSafe(input.args ?? {}) as Record<string, unknown>),
    };
    if (existing !== undefined) {
      const d = existing.def;
      const diff =
        d.type !== def.type ? ['type', def.type, d.type]
        : d.durable !== def.durable ? ['durable', def.durable, d.durable]
        : d.autoDelete !== def.autoDelete ? ['auto_delete', def.autoDelete, d.autoDelete]
        : d.internal !== def.internal ? ['internal', def.internal, d.internal]
        : !argsEqual(d.args, def.args) ? ['arguments', JSON.stringify(def.args), JSON.stringify(d.args)]
        : null;
      if (diff) {
        throw precondition(`inequivalent arg '${diff[0]}' for exchange '${def.name}' in vhost '${vhost}': received '${diff[1]}' but current is '${diff[2]}'`);
      }
      return;
    }
    // Checked only for a new exchange, after the name and permission checks (as RabbitMQ does).
    validateExchangeArgs(def.type, input.args ?? {}, def.name, vhost);
    const ex = new Exchange(def);
    if (ex.dedup !== null) {
      // Each incarnation has its own cache log, so a delete racing a redeclare cannot share one.
      def.dedupLog = `${dedupLogName(vhost, def.name)}/${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
      await this.#openDedup(ex);
      if (vh.exchanges.has(def.name)) {
        // A concurrent declare won while the cache opened.
        const cache = this.#dedup.get(ex)!;
        this.#dedup.delete(ex);
        await cache.close();
        await DedupCache.delete(this.storage, def.dedupLog);
        return;
      }
    }
    vh.exchanges.set(def.name, ex);
    if (def.durable) {
      try {
        await this.meta.put('exchange', qkey(vhost, def.name), def);
      } catch (err) {
        // Not stored (disk full, I/O error): it must not exist in memory either.
        if (vh.exchanges.get(def.name) === ex) vh.exchanges.delete(def.name);
        throw err;
      }
    }
  }

  async deleteExchange(user: string, vhost: string, name: string, ifUnused: boolean): Promise<void> {
    const vh = this.#vhost(vhost);
    if (name === '' || name.startsWith('amq.')) {
      throw accessRefused(`operation not permitted on the default exchange`);
    }
    const ex = vh.exchanges.get(name);
    if (ex === undefined) return; // RabbitMQ answers delete-ok for a missing exchange
    this.#check(user, vhost, 'configure', 'exchange', name);
    if (ifUnused && (ex.bindings.size > 0 || this.#bindingsTo(vh, 'exchange', name).length > 0)) {
      throw precondition(`exchange '${name}' in vhost '${vhost}' in use`);
    }
    await this.#removeExchange(vh, ex);
  }

  /** The deduplication cache of an exchange that asks for one (kept on disk across restarts). */
  async #openDedup(ex: Exchange): Promise<void> {
    const opts = ex.dedup!;
    const log = ex.def.dedupLog ?? dedupLogName(ex.def.vhost, ex.name);
    this.#dedup.set(ex, await DedupCache.open(this.storage, log, { size: opts.size, ttlMs: opts.ttlMs }));
  }

  async #removeExchange(vh: Vhost, ex: Exchange): Promise<void> {
    vh.exchanges.delete(ex.name);
    const cache = this.#dedup.get(ex);
    if (cache !== undefined) {
      this.#dedup.delete(ex);
      await cache.close();
      await DedupCache.delete(this.storage, ex.def.dedupLog ?? dedupLogName(vh.name, ex.name));
    }
    const work: Promise<void>[] = [];
    for (const b of ex.bindings.values()) work.push(this.meta.delete('binding', bindingId(b)));
    for (const b of this.#bindingsTo(vh, 'exchange', ex.name)) work.push(this.#unbindRaw(vh, b));
    if (ex.def.durable) work.push(this.meta.delete('exchange', qkey(vh.name, ex.name)));
    await Promise.all(work);
  }

  #bindingsTo(vh: Vhost, type: 'queue' | 'exchange', name: string): BindingDefinition[] {
    const out: BindingDefinition[] = [];
    for (const ex of vh.exchanges.values()) out.push(...ex.bindingsTo(type, name));
    return out;
  }

  // ---- bindings

  async bind(user: string, b: BindingDefinition): Promise<void> {
    const vh = this.#vhost(b.vhost);
    if (b.source === '') throw accessRefused(`operation not permitted on the default exchange`);
    if (b.destinationType === 'exchange' && b.destination === '') throw accessRefused(`operation not permitted on the default exchange`);
    const src = vh.exchanges.get(b.source);
    if (src === undefined) throw notFound(`exchange '${b.source}' in vhost '${b.vhost}'`);
    let durable: boolean;
    if (b.destinationType === 'queue') {
      const q = vh.queues.get(b.destination);
      if (q === undefined) throw notFound(`queue '${b.destination}' in vhost '${b.vhost}'`);
      durable = q.def.durable;
    } else {
      const dst = vh.exchanges.get(b.destination);
      if (dst === undefined) throw notFound(`exchange '${b.destination}' in vhost '${b.vhost}'`);
      durable = dst.def.durable;
    }
    this.#check(user, b.vhost, 'write', b.destinationType, b.destination);
    this.#check(user, b.vhost, 'read', 'exchange', b.source);
    const def: BindingDefinition = { ...b, args: toJsonSafe(b.args) as Record<string, unknown> };
    if (src.bind(def) && durable && src.def.durable) await this.meta.put('binding', bindingId(def), def);
  }

  async unbind(user: string, b: BindingDefinition): Promise<void> {
    const vh = this.#vhost(b.vhost);
    if (b.source === '') throw accessRefused(`operation not permitted on the default exchange`);
    const src = vh.exchanges.get(b.source);
    if (src === undefined) throw notFound(`exchange '${b.source}' in vhost '${b.vhost}'`);
    if (b.destinationType === 'queue' && !vh.queues.has(b.destination)) throw notFound(`queue '${b.destination}' in vhost '${b.vhost}'`);
    if (b.destinationType === 'exchange' && !vh.exchanges.has(b.destination)) throw notFound(`exchange '${b.destination}' in vhost '${b.vhost}'`);
    this.#check(user, b.vhost, 'write', b.destinationType, b.destination);
    this.#check(user, b.vhost, 'read', 'exchange', b.source);
    await this.#unbindRaw(vh, { ...b, args: toJsonSafe(b.args) as Record<string, unknown> });
  }

  async #unbindRaw(vh: Vhost, b: BindingDefinition): Promise<void> {
    const src = vh.exchanges.get(b.source);
    if (src?.unbind(b)) await this.meta.delete('binding', bindingId(b));
    if (src !== undefined && src.def.autoDelete && src.bindings.size === 0) await this.#removeExchange(vh, src);
  }

  // ---- queues

  async declareQueue(user: string, vhost: string, input: DeclareQueueInput, connectionId: number): Promise<{ name: string; messageCount: number; consumerCount: number }> {
    const vh = this.#vhost(vhost);
    let name = input.name;
    if (input.passive) {
      const q = vh.queues.get(name);
      if (q === undefined) throw notFound(`queue '${name}' in vhost '${vhost}'`);
      this.#checkExclusive(q, connectionId);
      return { name, messageCount: q.messageCount, consumerCount: q.consumerCount };
    }
    if (name === '') name = `amq.gen-${randomBytes(16).toString('base64url')}`;
    else if (name.startsWith('amq.')) throw accessRefused(`queue name '${name}' contains reserved prefix 'amq.*'`);
    checkQueueArgs(input.args ?? {}, name, vhost);
    this.#check(user, vhost, 'configure', 'queue', name);
    const def: StoredQueueDef = {
      vhost,
      name,
      durable: input.durable ?? false,
      exclusive: input.exclusive ?? false,
      autoDelete: input.autoDelete ?? false,
      args: toJsonSafe(input.args ?? {}) as Record<string, unknown>,
      logName: `queue/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}/${Date.now().toString(36)}${randomBytes(3).toString('hex')}`,
    };
    const existing = vh.queues.get(name);
    if (existing !== undefined) {
      this.#checkExclusive(existing, connectionId);
      const d = existing.def;
      const diff =
        d.durable !== def.durable ? ['durable', def.durable, d.durable]
        : d.exclusive !== def.exclusive ? ['exclusive', def.exclusive, d.exclusive]
        : d.autoDelete !== def.autoDelete ? ['auto_delete', def.autoDelete, d.autoDelete]
        : null;
      if (diff) throw precondition(`inequivalent arg '${diff[0]}' for queue '${name}' in vhost '${vhost}': received '${diff[1]}' but current is '${diff[2]}'`);
      for (const k of new Set([...Object.keys(d.args), ...Object.keys(def.args)])) {
        if (JSON.stringify(d.args[k]) !== JSON.stringify(def.args[k])) {
          throw precondition(`inequivalent arg '${k}' for queue '${name}' in vhost '${vhost}': received ${fmtArg(def.args[k])} but current is ${fmtArg(d.args[k])}`);
        }
      }
      existing.touch();
      return { name, messageCount: existing.messageCount, consumerCount: existing.consumerCount };
    }
    const q = await this.#openQueue(def, def.exclusive ? connectionId : null);
    // A concurrent declare of the same name may have won while the log was being created.
    const raced = vh.queues.get(name);
    if (raced !== undefined) {
      q.markDeleted();
      this.#queuesById.delete(q.id);
      await q.store.close();
      await this.#deleteQueueLogs(def.logName);
      return { name, messageCount: raced.messageCount, consumerCount: raced.consumerCount };
    }
    vh.queues.set(name, q);
    // Every queue is bound to the default exchange under its own name (AMQP 0-9-1 §3.1.3.1).
    const defaultBinding: BindingDefinition = { vhost, source: '', destinationType: 'queue', destination: name, routingKey: name, args: {} };
    vh.exchanges.get('')!.bind(defaultBinding);
    if (def.durable) {
      try {
        await this.meta.put('queue', qkey(vhost, name), def);
      } catch (err) {
        // Not stored (disk full, I/O error): undo the in-memory queue so a redeclare retries.
        if (vh.queues.get(name) === q) {
          vh.queues.delete(name);
          vh.exchanges.get('')!.unbind(defaultBinding);
        }
        q.markDeleted();
        this.#queuesById.delete(q.id);
        // Not awaited: closing may wait on a flush the full disk cannot take.
        void q.store.close().then(() => this.#deleteQueueLogs(def.logName)).catch(() => undefined);
        throw err;
      }
    }
    return { name, messageCount: 0, consumerCount: 0 };
  }

  #checkExclusive(q: Queue, connectionId: number): void {
    if (q.ownerConnection !== null && q.ownerConnection !== connectionId) {
      throw resourceLocked(
        `cannot obtain exclusive access to locked queue '${q.name}' in vhost '${q.def.vhost}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.`,
      );
    }
  }

  /** The queue, checked for existence, exclusivity and the permission `perm`. */
  queue(user: string, vhost: string, name: string, connectionId: number, perm: 'read' | 'configure' | null = 'read'): Queue {
    const q = this.#vhost(vhost).queues.get(name);
    if (q === undefined) throw notFound(`queue '${name}' in vhost '${vhost}'`);
    this.#checkExclusive(q, connectionId);
    if (perm !== null) this.#check(user, vhost, perm, 'queue', name);
    return q;
  }

  async deleteQueue(user: string, vhost: string, name: string, ifUnused: boolean, ifEmpty: boolean, connectionId: number): Promise<number> {
    const vh = this.#vhost(vhost);
    const q = vh.queues.get(name);
    if (q === undefined) return 0; // RabbitMQ answers delete-ok with 0 for a missing queue
    this.#checkExclusive(q, connectionId);
    this.#check(user, vhost, 'configure', 'queue', name);
    if (ifUnused && q.consumerCount > 0) throw precondition(`queue '${name}' in vhost '${vhost}' in use`);
    if (ifEmpty && q.messageCount > 0) throw precondition(`queue '${name}' in vhost '${vhost}' is not empty`);
    return this.#deleteQueue(vh, q);
  }

  async #deleteQueue(vh: Vhost, q: Queue): Promise<number> {
    if (vh.queues.get(q.name) !== q) return 0;
    vh.queues.delete(q.name);
    const count = q.messageCount;
    for (const c of q.markDeleted()) c.sink.cancelledByBroker(c);
    const work: Promise<void>[] = [];
    for (const b of this.#bindingsTo(vh, 'queue', q.name)) work.push(this.#unbindRaw(vh, b));
    if (q.def.durable) work.push(this.meta.delete('queue', qkey(vh.name, q.name)));
    this.#queuesById.delete(q.id);
    await Promise.all(work);
    await q.store.close();
    await this.#deleteQueueLogs((q.def as StoredQueueDef).logName);
    return count;
  }

  purgeQueue(user: string, vhost: string, name: string, connectionId: number): number {
    const q = this.queue(user, vhost, name, connectionId, 'read');
    return q.purge();
  }

  /** Deletes the exclusive queues a closing connection owned. */
  async connectionClosed(connectionId: number): Promise<void> {
    const work: Promise<number>[] = [];
    for (const vh of this.#vhosts.values()) {
      for (const q of vh.queues.values()) if (q.ownerConnection === connectionId) work.push(this.#deleteQueue(vh, q));
    }
    await Promise.all(work);
  }

  // ---- publish

  /** Routes and stores a message. Synchronous: the confirm waits on flushed() when needsFlush. */
  publish(user: string, vhost: string, input: PublishInput): PublishResult {
    const vh = this.#vhost(vhost);
    const ex = vh.exchanges.get(input.exchange);
    if (ex === undefined) throw notFound(`exchange '${input.exchange}' in vhost '${vhost}'`);
    if (ex.def.internal) throw accessRefused(`cannot publish to internal exchange '${input.exchange}' in vhost '${vhost}'`);
    this.#check(user, vhost, 'write', 'exchange', input.exchange);
    const flags = input.persistent ? MessageFlags.PERSISTENT : 0;
    const msg = this.#routable.reset(input.routingKey, input.props);
    // A new key is recorded on disk: a persistent message's confirm waits for it too.
    if (ex.dedup !== null && this.#isDuplicate(ex, msg)) return { routed: 0, needsFlush: false, rejected: false };
    const dedupFlush = ex.dedup !== null && input.persistent;
    if (ex.delayed) {
      const delay = Number(this.format.header(input.props, 'x-delay') ?? 0);
      if (delay > 0) {
        const payload = encodeStoredMessage(input.exchange, input.routingKey, input.props, input.body);
        this.#delays.add(Date.now() + delay, delayGroup(vhost, input.exchange), encodeRoute(flags, vhost, payload));
        return { routed: 1, needsFlush: input.persistent, rejected: false };
      }
    }
    let dests = this.#route(vh, ex, msg);
    let props = input.props;
    const sender = this.format.senderKeys(props);
    if (sender !== undefined) {
      dests = this.#routeKeys(vh, ex, dests, [...sender.cc, ...sender.bcc], props);
      if (sender.bcc.length > 0) props = this.format.withoutHeader(props, 'BCC');
    }
    if (dests.size === 0) return { routed: 0, needsFlush: dedupFlush, rejected: false };
    const payload = encodeStoredMessage(input.exchange, input.routingKey, props, input.body);
    const r = this.#deliverTo(vh, dests, payload, props, input.body.length, flags);
    if (dedupFlush) r.needsFlush = true;
    return r;
  }

  /**
   * rabbitmq-message-deduplication: the key is the x-deduplication-header header (Sluice also
   * takes the message id when it is absent); a key seen within the cache's TTL is a duplicate
   * and the message is not routed. x-cache-ttl on the message overrides the TTL.
   */
  #isDuplicate(ex: Exchange, msg: Routable): boolean {
    const cache = this.#dedup.get(ex);
    if (cache === undefined) return false;
    const h = msg.headers();
    const key = dedupKey(h?.[DEDUP_HEADER] ?? msg.property('message_id'));
    if (key === null) return false;
    return cache.seen(key, Date.now(), dedupTtl(h?.[DEDUP_TTL_HEADER]));
  }

  /** `dests` plus what the extra routing keys (CC, BCC) reach. */
  #routeKeys(vh: Vhost, ex: Exchange, dests: Set<DestinationKey>, keys: string[], props: Buffer): Set<DestinationKey> {
    const all = new Set(dests);
    for (const k of keys) for (const d of this.#route(vh, ex, new Routable(this.format).reset(k, props), true)) all.add(d);
    return all;
  }

  /** Stores a routed message in each destination queue. */
  #deliverTo(vh: Vhost, dests: Set<DestinationKey>, payload: Buffer, props: Buffer, bodySize: number, flags: number): PublishResult {
    const now = Date.now();
    // Per-message TTL: RabbitMQ's rules (rabbit_basic:parse_expiration); refused with 406.
    let expiresIn = -1;
    const exp = this.format.expiration(props);
    if (exp !== undefined) {
      if (!/^\d+$/.test(exp)) throw precondition(`invalid expiration '${exp}': {invalid_expiration,${exp}}`);
      expiresIn = Number(exp);
      flags |= MessageFlags.EXPIRES;
    }
    let priority = -1;
    let routed = 0;
    let needsFlush = false;
    let rejected = false;
    const persistent = (flags & MessageFlags.PERSISTENT) !== 0;
    for (const key of dests) {
      const q = vh.queues.get(key.slice(2));
      if (q === undefined) continue;
      if (priority < 0) priority = q.settings.maxPriority !== undefined ? (this.format.priority(props) ?? 0) : 0;
      const ref = q.enqueue(payload, bodySize, now, flags, priority);
      routed++;
      if (ref < 0) {
        if (ref === NotEnqueued.REJECTED) rejected = true;
        continue;
      }
      if (persistent && q.def.durable) needsFlush = true;
      if (expiresIn >= 0 && (q.settings.messageTtl === undefined || expiresIn < q.settings.messageTtl)) {
        this.#expiry.add(now + expiresIn, EXPIRY_GROUP, encodeExpire(q.id, ref));
      }
    }
    return { routed, needsFlush, rejected };
  }

  // Reused across publishes so routing allocates nothing per message.
  readonly #routeOut = new Set<DestinationKey>();
  readonly #routeFound = new Set<DestinationKey>();
  readonly #routeSeen = new Set<Exchange>();
  readonly #routePending: Exchange[] = [];

  /**
   * The queues `msg` reaches from `ex`. `fresh` routes with sets of its own: dead-lettering
   * runs inside a publish's delivery loop (drop-head), which still iterates the shared ones.
   */
  #route(vh: Vhost, ex: Exchange, msg: RoutableMessage, fresh = false): Set<DestinationKey> {
    const out = fresh ? new Set<DestinationKey>() : this.#routeOut;
    const found = fresh ? new Set<DestinationKey>() : this.#routeFound;
    const seen = fresh ? new Set<Exchange>() : this.#routeSeen;
    const pending: Exchange[] = fresh ? [] : this.#routePending;
    out.clear();
    seen.clear();
    seen.add(ex);
    pending.push(ex);
    // Exchange-to-exchange bindings and alternate exchanges: each exchange is visited once (loop-safe).
    while (pending.length > 0) {
      const e = pending.pop()!;
      found.clear();
      e.route(msg, found);
      if (found.size === 0 && e.def.args['alternate-exchange'] !== undefined) {
        const ae = vh.exchanges.get(String(e.def.args['alternate-exchange']));
        if (ae !== undefined && !seen.has(ae)) {
          seen.add(ae);
          pending.push(ae);
        }
      }
      for (const k of found) {
        if (k.charCodeAt(0) === 113 /* q */) out.add(k);
        else {
          const next = vh.exchanges.get(k.slice(2));
          if (next !== undefined && !seen.has(next)) {
            seen.add(next);
            pending.push(next);
          }
        }
      }
    }
    return out;
  }

  // ---- dead-lettering, retries, delays, expiry

  /**
   * Republishes a message that left `q` unconsumed to the queue's dead-letter exchange, with
   * x-death updated (rabbit_dead_letter). At most once, as in RabbitMQ: no confirm covers it.
   * A cycle with no rejection in it (expired → same queue) drops the message for that queue.
   */
  #deadLetter(q: Queue, payload: Buffer, flags: number, reason: DeathReason): void {
    const dlx = q.settings.deadLetterExchange;
    if (dlx === undefined) return;
    const vh = this.#vhosts.get(q.def.vhost);
    const ex = vh?.exchanges.get(dlx);
    if (vh === undefined || ex === undefined) return; // RabbitMQ drops it too
    const v = new StoredMessageView().parse(payload);
    const cc = this.format.senderKeys(v.props)?.cc ?? [];
    const routingKey = q.settings.deadLetterRoutingKey ?? v.routingKey;
    const props = this.format.deadLettered(v.props, { queue: q.name, reason, exchange: v.exchange, routingKeys: [v.routingKey, ...cc], time: Date.now() });
    let dests = this.#route(vh, ex, new Routable(this.format).reset(routingKey, props), true);
    // Without a dead-letter routing key the message keeps all its keys, CC included.
    if (q.settings.deadLetterRoutingKey === undefined && cc.length > 0) dests = this.#routeKeys(vh, ex, dests, cc, props);
    if (reason !== 'rejected') {
      const deaths = this.format.deaths(props);
      for (const key of [...dests]) if (isCycle(key.slice(2), deaths)) dests.delete(key);
    }
    if (dests.size === 0) return;
    const body = v.body;
    const out = encodeStoredMessage(dlx, routingKey, props, body);
    try {
      this.#deliverTo(vh, dests, out, props, body.length, flags & MessageFlags.PERSISTENT);
    } catch (err) {
      this.onError(err, 'dead-lettering');
    }
  }

  /** x-retry-delays: the message comes back to `q` after `delayMs`, counting the attempt in x-retry-count. */
  #retry(q: Queue, payload: Buffer, flags: number, attempt: number, delayMs: number): void {
    const props = new StoredMessageView().parse(payload).props;
    const again = withStoredProps(payload, this.format.withIntHeader(props, 'x-retry-count', attempt));
    this.#delays.add(Date.now() + delayMs, retryGroup(q.def.vhost, q.name), encodeEnqueue(flags & MessageFlags.PERSISTENT, q.def.vhost, q.name, again));
  }

  /**
   * Fires a delayed message or a retry. Exactly once across kill -9: after the fired copies,
   * each queue gets a fire mark naming the entries (#markFired), in the same log, so it is on
   * disk only if the copies before it are. The schedule's done mark comes a round later; if the
   * process dies in between, the entry is due again after restart, and the marks found in the
   * queues' tails (#readFireMarks) say which queues already hold it.
   */
  #fireDelay(e: ScheduledEntry): void {
    const w = decodeWork(e.payload);
    if (w === null || w.kind === 3) return;
    const vh = this.#vhosts.get(w.vhost);
    if (vh === undefined) return;
    const v = new StoredMessageView().parse(w.message);
    const props = v.props;
    const skip = this.#alreadyFired?.get(e.id);
    let dests: Set<DestinationKey>;
    if (w.kind === 1) {
      const ex = vh.exchanges.get(v.exchange);
      if (ex === undefined) return; // deleted while the message waited: dropped, as the plugin does
      dests = this.#route(vh, ex, new Routable(this.format).reset(v.routingKey, props), true);
    } else {
      dests = new Set([destKey('queue', w.queue)]);
    }
    for (const key of dests) {
      const q = vh.queues.get(key.slice(2));
      if (q === undefined || skip?.has(q.id)) {
        dests.delete(key);
        continue;
      }
      let ids = this.#firedInto.get(q);
      if (ids === undefined) this.#firedInto.set(q, (ids = []));
      ids.push(e.id);
    }
    if (dests.size > 0) this.#deliverTo(vh, dests, w.message, props, v.bodySize, w.flags);
  }

  /** Appends a fire mark to each queue fired into by the last batch; drops them once the done marks are stored. */
  #markFired(): void {
    if (this.#firedInto.size === 0) return;
    const marks: Array<[Queue, number]> = [];
    const now = Date.now();
    for (const [q, ids] of this.#firedInto) {
      if (q.deleted) continue;
      const body = Buffer.allocUnsafe(ids.length * 8);
      for (let i = 0; i < ids.length; i++) body.writeDoubleBE(ids[i]!, i * 8);
      marks.push([q, q.store.enqueue(encodeStoredMessage('', '', EMPTY, body), now, MessageFlags.FIRE_MARK)]);
    }
    this.#firedInto.clear();
    // The done marks of this batch are stored once a flush started now has completed.
    void this.#delays.store.flushed().then(
      () => {
        for (const [q, ref] of marks) if (!q.deleted) q.store.discard(ref);
      },
      () => undefined,
    );
  }

  /** Entry id → ids of the queues whose tail holds a fire mark naming it. */
  async #readFireMarks(): Promise<Map<number, Set<string>>> {
    const fired = new Map<number, Set<string>>();
    for (const q of this.#queuesById.values()) {
      if (!q.def.durable) continue;
      const refs: number[] = [];
      await q.store.forEachInTail(FIRE_MARK_WINDOW_MS, (payload, ref, flags) => {
        if ((flags & MessageFlags.FIRE_MARK) === 0) return;
        refs.push(ref);
        const body = new StoredMessageView().parse(payload).body;
        for (let p = 0; p + 8 <= body.length; p += 8) {
          const id = body.readDoubleBE(p);
          let s = fired.get(id);
          if (s === undefined) fired.set(id, (s = new Set()));
          s.add(q.id);
        }
      });
      // Read even once acked, so they need not stay in the queue (and its message count).
      for (const ref of refs) q.store.discard(ref);
    }
    return fired;
  }

  #fireExpiry(e: ScheduledEntry): void {
    const w = decodeWork(e.payload);
    if (w === null || w.kind !== 3) return;
    this.#queuesById.get(w.queueId)?.expireRef(w.ref);
  }

  /** Pending delayed messages per exchange of `vhost` (x-delayed-message). */
  delayedCounts(vhost: string): Map<string, number> {
    const out = new Map<string, number>();
    const prefix = delayGroup(vhost, '');
    for (const [group, n] of this.#delays.store.groupCounts()) {
      if (group.startsWith(prefix)) out.set(group.slice(prefix.length), n);
    }
    return out;
  }

  /** Pending delayed messages of one exchange, in due order (browsing). */
  async browseDelayed(vhost: string, exchange: string, limit = 100): Promise<Array<{ dueAt: number; routingKey: string; body: Buffer; props: Buffer }>> {
    const entries = await this.#delays.store.browse({ group: delayGroup(vhost, exchange), limit });
    const out: Array<{ dueAt: number; routingKey: string; body: Buffer; props: Buffer }> = [];
    for (const e of entries) {
      const w = decodeWork(e.payload);
      if (w === null || w.kind !== 1) continue;
      const v = new StoredMessageView().parse(w.message);
      out.push({ dueAt: e.dueAt, routingKey: v.routingKey, body: v.body, props: v.props });
    }
    return out;
  }

  /** Resolves when every message published so far is stored per its queue's durability. */
  flushed(): Promise<void> {
    return this.storage.committer.flushed();
  }

  // ---- consume

  consume(user: string, vhost: string, input: ConsumeInput): Consumer {
    const q = this.queue(user, vhost, input.queue, input.connectionId, 'read');
    const c: Consumer = {
      tag: input.tag,
      queue: q,
      noAck: input.noAck,
      exclusive: input.exclusive,
      priority: input.priority ?? 0,
      args: input.args ?? {},
      sink: input.sink,
      connectionId: input.connectionId,
    };
    q.addConsumer(c);
    return c;
  }

  cancel(c: Consumer): void {
    c.queue.removeConsumer(c);
  }

  /** Applies config-file policies again (queues pick them up when they next open). */
  setPolicies(defs: Array<Partial<PolicyDefinition> & Record<string, unknown>>): void {
    this.policies.set(defs.map((p) => Policies.normalise(p)));
  }

  async get(user: string, vhost: string, queue: string, connectionId: number): Promise<{ queue: Queue; msg: StoredMessage } | null> {
    const q = this.queue(user, vhost, queue, connectionId, 'read');
    const msg = await q.get();
    return msg === null ? null : { queue: q, msg };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#delays?.close();
    await this.#expiry?.close();
    for (const cache of this.#dedup.values()) await cache.close();
    for (const vh of this.#vhosts.values()) {
      for (const q of vh.queues.values()) {
        q.markDeleted();
        await q.store.close();
      }
    }
    await this.meta.close();
    await this.storage.close();
  }
}


/**
 * rabbit_dead_letter:is_cycle: the target queue is in the x-death history and every death
 * since it (and that one) was automatic, not a rejection.
 */
function isCycle(queue: string, deaths: Array<{ queue: string; reason: string }>): boolean {
  for (const d of deaths) {
    if (d.reason === 'rejected') return false;
    if (d.queue === queue) return true;
  }
  return false;
}
