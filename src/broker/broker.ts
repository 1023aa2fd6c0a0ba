/**
 * The messaging model, protocol-neutral: vhosts, exchanges, queues, bindings, users, publish
 * and consume. Front-ends translate frames to these calls and BrokerErrors back to frames.
 * Definitions are stored in the MetaStore; a declare resolves only once it is durable.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import {
  FileMetaStore,
  Storage,
  type MetaStore,
  type StorageOptions,
  type StorageRecoveryReport,
  type StoredMessage,
} from '../storage/mod.js';
import { BrokerError, accessRefused, notFound, precondition, resourceLocked } from './errors.js';
import { ExchangeDedup } from './dedup/exchange-dedup.js';
import { Exchange, EXCHANGE_TYPES, bindingId, validateExchangeArgs, type BindingDefinition, type ExchangeDefinition, type ExchangeType } from './exchange/exchange.js';
import { argsEqual, argType, toJsonSafe } from './json-args.js';
import type { MessageFormat } from './message-format.js';
import { encodeStoredMessage, MessageFlags } from './message.js';
import { Policies, type PolicyDefinition } from './policy/policy.js';
import type { Consumer } from './queue/consumer.js';
import type { ConsumeInput, DeclareExchangeInput, DeclareQueueInput, FlushListener, PublishInput, PublishResult } from './broker-api.js';
export type { ConsumeInput, DeclareExchangeInput, DeclareQueueInput, FlushListener, PublishInput, PublishResult } from './broker-api.js';
import { checkQueueArgs, fmtArg } from './queue/queue-args.js';
import { deleteQueueLogs, openQueueStore, queueLogOf } from './queue/queue-logs.js';
import { resolveQueueSettings } from './queue/queue-settings.js';
import { NotEnqueued, Queue, type QueueDefinition, type QueueServices } from './queue/queue.js';
import { Router } from './routing/router.js';
import { PublishFlow } from './publish-flow.js';
import { delayedDueAt, ScheduledDelivery, type DelayedMessage, type DeliveryHost } from './schedule/scheduled-delivery.js';
import { deadLetter } from './dead-letter.js';
import { Access, type Permission } from './access.js';
import type { PermissionRecord, UserRecord } from './users.js';
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

const qkey = (vhost: string, name: string): string => `${vhost}\u0000${name}`;

export class Broker {
  readonly storage: Storage;
  readonly meta: MetaStore;
  readonly recovery: StorageRecoveryReport;
  readonly format: MessageFormat;
  readonly policies = new Policies();
  readonly #vhosts = new Map<string, Vhost>();
  readonly access: Access;
  /** Queues by their incarnation id (store log name), for schedule entries. */
  readonly #queuesById = new Map<string, Queue>();
  /** File deletions of transient queues still running (Broker.close waits for them). */
  readonly #cleanups = new Set<Promise<void>>();
  readonly #services: QueueServices;
  readonly router: Router;
  /** Publish flow control: front-ends stop reading publishers while it is held. */
  readonly flow = new PublishFlow();
  #scheduled!: ScheduledDelivery;
  /** What dead-lettering and scheduled delivery need from the broker. */
  readonly #delivery: DeliveryHost;
  readonly #dedup: ExchangeDedup;
  #nextConnectionId = 1;
  #closed = false;
  /** Where errors nobody awaits go (a failed scheduled delivery); the server sets a logger. */
  onError: (err: unknown, what: string) => void = () => undefined;

  private constructor(storage: Storage, meta: MetaStore, recovery: StorageRecoveryReport, opts: BrokerOptions) {
    this.storage = storage;
    this.meta = meta;
    this.recovery = recovery;
    this.format = opts.format;
    this.router = new Router(opts.format);
    this.#dedup = new ExchangeDedup(storage);
    this.#delivery = {
      format: this.format,
      router: this.router,
      vhost: (name) => this.#vhosts.get(name),
      queueById: (id) => this.#queuesById.get(id),
      queues: () => this.#queuesById.values(),
      deliverTo: (vh, dests, payload, props, bodySize, flags) => void this.#deliverTo(this.router.queuesOf(vh, dests), payload, props, bodySize, flags),
      onError: (err, what) => this.onError(err, what),
      flow: this.flow,
    };
    this.access = new Access(meta, opts.loopbackUsers ?? ['guest']);
    this.policies.set((opts.policies ?? []).map((p) => Policies.normalise(p)));
    this.#services = {
      format: opts.format,
      now: Date.now,
      deadLetter: (q, payload, flags, reason) => deadLetter(this.#delivery, q, payload, flags, reason),
      retry: (q, payload, flags, attempt, delayMs) => this.#scheduled.retry(q, payload, flags, attempt, delayMs),
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
        await this.#dedup.open(ex);
        dedupLogs.add(ExchangeDedup.logName(ex));
      }
    }
    // Caches of non-durable exchanges go with them.
    await this.#dedup.deleteOthers(dedupLogs);
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
      if (name.startsWith('queue/') && !keep.has(queueLogOf(name))) await this.storage.deleteLog(name);
    }
    this.#scheduled = await ScheduledDelivery.open(this.storage, this.#delivery);
  }

  async #openQueue(def: StoredQueueDef, owner: number | null): Promise<Queue> {
    const settings = resolveQueueSettings(def.args, this.policies.match(def.vhost, 'queues', def.name));
    const { store, recoveredBelow } = await openQueueStore(this.storage, def.logName, def.durable, settings);
    const q = new Queue(def, def.logName, store, settings, this.#services, owner, recoveredBelow);
    await q.recover();
    this.#queuesById.set(q.id, q);
    return q;
  }

  // ---- users and access

  addUser(name: string, password: string, tags: string[] = []): Promise<void> {
    return this.access.addUser(name, password, tags);
  }

  setPermissions(p: PermissionRecord): Promise<void> {
    return this.access.setPermissions(p);
  }

  async addVhost(name: string): Promise<void> {
    if (this.#vhosts.has(name)) return;
    await this.meta.put('vhost', name, { name });
    this.#vhosts.set(name, new Vhost(name));
  }

  /** Checks a login; `loopback` says whether the client connected from 127.0.0.0/8 or ::1. */
  authenticate(user: string, password: string, loopback: boolean): UserRecord {
    return this.access.authenticate(user, password, loopback);
  }

  /** The vhost a connection opens, if the user has permissions there (530 otherwise). */
  openVhost(user: string, vhost: string): void {
    if (!this.#vhosts.has(vhost)) {
      throw new BrokerError('not-allowed', `NOT_ALLOWED - vhost ${vhost} not found`, 'connection');
    }
    if (this.access.permission(user, vhost) === undefined) {
      throw new BrokerError('not-allowed', `NOT_ALLOWED - access to vhost '${vhost}' refused for user '${user}'`, 'connection');
    }
  }

  #check(user: string, vhost: string, perm: Permission, kind: 'queue' | 'exchange', name: string): void {
    this.access.check(user, vhost, perm, kind, name);
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
      def.dedupLog = ExchangeDedup.newLogName(vhost, def.name);
      await this.#dedup.open(ex);
      if (vh.exchanges.has(def.name)) {
        // A concurrent declare won while the cache opened.
        await this.#dedup.remove(ex);
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

  async #removeExchange(vh: Vhost, ex: Exchange): Promise<void> {
    vh.exchanges.delete(ex.name);
    await this.#dedup.remove(ex);
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
      await deleteQueueLogs(this.storage, def.logName);
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
        void q.store.close().then(() => deleteQueueLogs(this.storage, def.logName)).catch(() => undefined);
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
    const logName = (q.def as StoredQueueDef).logName;
    if (q.def.durable) {
      await q.store.close();
      await deleteQueueLogs(this.storage, logName);
    } else {
      // A transient queue's files matter to no one once it is gone (and go at the next start
      // anyway): delete-ok does not wait for them. Log names are per incarnation, so a queue
      // declared again under the name does not meet them.
      const gone: Promise<void> = q.store
        .close()
        .then(() => deleteQueueLogs(this.storage, logName))
        .catch((err: unknown) => this.onError(err, `deleting the files of queue '${q.name}'`))
        .finally(() => this.#cleanups.delete(gone));
      this.#cleanups.add(gone);
    }
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
    const msg = this.router.message(input.routingKey, input.props);
    // A new key is recorded on disk: a persistent message's confirm waits for it too.
    if (ex.dedup !== null && this.#dedup.isDuplicate(ex, msg)) return { routed: 0, needsFlush: false, rejected: false };
    const dedupFlush = ex.dedup !== null && input.persistent;
    if (ex.delayed) {
      const now = Date.now();
      const dueAt = delayedDueAt(this.format, input.props, now);
      if (dueAt > now) {
        const payload = encodeStoredMessage(input.exchange, input.routingKey, input.props, input.body);
        this.#scheduled.delay(dueAt, vhost, input.exchange, flags, payload);
        return { routed: 1, needsFlush: input.persistent, rejected: false };
      }
    }
    let queues = this.router.routeQueues(vh, ex, msg);
    let props = input.props;
    const sender = this.format.senderKeys(props);
    if (sender !== undefined) {
      const dests = this.router.routeKeys(vh, ex, this.router.route(vh, ex, msg), [...sender.cc, ...sender.bcc], props);
      queues = this.router.queuesOf(vh, dests);
      if (sender.bcc.length > 0) props = this.format.withoutHeader(props, 'BCC');
    }
    if (queues.length === 0) return { routed: 0, needsFlush: dedupFlush, rejected: false };
    const payload = encodeStoredMessage(input.exchange, input.routingKey, props, input.body);
    const r = this.#deliverTo(queues, payload, props, input.body.length, flags);
    if (dedupFlush) r.needsFlush = true;
    return r;
  }

  /** Stores a routed message in each destination queue. */
  #deliverTo(queues: readonly Queue[], payload: Buffer, props: Buffer, bodySize: number, flags: number): PublishResult {
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
    for (let i = 0; i < queues.length; i++) {
      const q = queues[i]!;
      if (priority < 0) priority = q.settings.maxPriority !== undefined ? (this.format.priority(props) ?? 0) : 0;
      const ref = q.enqueue(payload, bodySize, now, flags, priority);
      routed++;
      if (ref < 0) {
        if (ref === NotEnqueued.REJECTED) rejected = true;
        continue;
      }
      if (persistent && q.def.durable) needsFlush = true;
      if (expiresIn >= 0 && (q.settings.messageTtl === undefined || expiresIn < q.settings.messageTtl)) {
        this.#scheduled.expire(now + expiresIn, q, ref);
      }
    }
    return { routed, needsFlush, rejected };
  }

  // ---- delayed messages

  /** Pending delayed messages per exchange of `vhost` (x-delayed-message). */
  delayedCounts(vhost: string): Map<string, number> {
    return this.#scheduled.delayedCounts(vhost);
  }

  /** Pending delayed messages of one exchange, in due order (browsing). */
  browseDelayed(vhost: string, exchange: string, limit = 100): Promise<DelayedMessage[]> {
    return this.#scheduled.browseDelayed(vhost, exchange, limit);
  }

  /** Resolves when every message published so far is stored per its queue's durability. */
  flushed(): Promise<void> {
    return this.storage.committer.flushed();
  }

  /** flushed() as a callback, for the confirm path: no promise per flush. */
  whenFlushed(l: FlushListener): void {
    this.storage.committer.whenFlushed(l);
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

  async get(user: string, vhost: string, queue: string, connectionId: number): Promise<{ queue: Queue; msg: StoredMessage } | null> {
    const q = this.queue(user, vhost, queue, connectionId, 'read');
    const msg = await q.get();
    return msg === null ? null : { queue: q, msg };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#scheduled?.close();
    await this.#dedup.close();
    for (const vh of this.#vhosts.values()) {
      for (const q of vh.queues.values()) {
        q.markDeleted();
        await q.store.close();
      }
    }
    await Promise.all(this.#cleanups);
    await this.meta.close();
    await this.storage.close();
  }
}


