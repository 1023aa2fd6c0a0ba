/**
 * A queue: its store, its consumers, the dispatch loop that hands ready messages to consumers
 * with credit (round-robin among those of the highest priority, or to the single active one),
 * and the limits its settings impose: TTL, length limits, delivery limit, deduplication and
 * queue expiry. Where a message leaves without being consumed it goes to the broker's
 * QueueServices (dead-lettering, retries), which also schedules per-message expiry.
 *
 * Expiry: with a queue TTL every message expires in queue order, so one timer on the head
 * suffices. A message with its own shorter expiration gets a schedule entry (the broker's
 * expiry schedule), so it goes when due wherever it sits, without a scan. Both are checked
 * again when a message is taken, which covers requeued messages.
 */
import type { QueueStore, StoredMessage } from '../../storage/mod.js';
import { accessRefused, describe } from '../errors.js';
import type { DeathReason, MessageFormat } from '../message-format.js';
import { MessageFlags, StoredMessageView, storedBodySize, withStoredProps } from '../message.js';
import type { Consumer } from './consumer.js';
import type { QueueSettings } from './queue-settings.js';

export interface QueueDefinition {
  vhost: string;
  name: string;
  durable: boolean;
  exclusive: boolean;
  autoDelete: boolean;
  args: Record<string, unknown>;
}

/** What a queue needs from the broker around it. */
export interface QueueServices {
  readonly format: MessageFormat;
  now(): number;
  /** A message left the queue unconsumed (its store entry is already gone). */
  deadLetter(q: Queue, payload: Buffer, flags: number, reason: DeathReason): void;
  /** A rejected message comes back after `delayMs`, as retry number `attempt`. */
  retry(q: Queue, payload: Buffer, flags: number, attempt: number, delayMs: number): void;
  /** The queue was unused for its x-expires time. */
  expired(q: Queue): void;
  /** An auto-delete queue lost its last consumer. */
  unused(q: Queue): void;
}

/** What enqueue() returns instead of a ref when the message was not stored. */
export const NotEnqueued = {
  /** Refused by x-overflow reject-publish(-dlx): the publisher's confirm is a nack. */
  REJECTED: -1,
  /** Dropped as a duplicate (x-message-deduplication): counts as routed. */
  DUPLICATE: -2,
  /** Handed straight to a no-ack consumer, never stored: counts as routed, nothing to flush. */
  DELIVERED: -3,
} as const;

const MAX_TIMER_MS = 2 ** 31 - 1;
const DEDUP_HEADER = 'x-deduplication-header';
const DELIVERY_COUNT = 'x-delivery-count';
const RETRY_COUNT = 'x-retry-count';
const NO_PAYLOAD = Buffer.alloc(0);

export class Queue {
  readonly def: QueueDefinition;
  readonly store: QueueStore;
  readonly settings: QueueSettings;
  /** Unique per incarnation of the queue (the store's log name): schedule entries name it. */
  readonly id: string;
  /** The owning connection of an exclusive queue. */
  readonly ownerConnection: number | null;
  readonly #svc: QueueServices;
  #consumers: Consumer[] = [];
  /** How many of #consumers are no-ack: when all are, a message can skip the store. */
  #noAckConsumers = 0;
  #rr = 0;
  #dispatching = false;
  readonly #handOver: StoredMessage = { ref: -1, payload: NO_PAYLOAD, ts: 0, flags: 0, redelivered: false };
  #filling = false;
  #hadConsumer = false;
  #deleted = false;
  /** Refs below which transient messages were recovered from before a restart; per priority level. */
  readonly #recoveredBelow: number[];
  readonly #view = new StoredMessageView();
  /** Any limit or TTL is set: the plain path skips all of them with one test. */
  readonly #plain: boolean;
  #readyBytes = 0;
  /** The last of the reads that settle rejected messages (#settleWithPayload). */
  #settling: Promise<void> = Promise.resolve();
  /** The message being enqueued while dispatch offers it (not expired yet, whatever its TTL). */
  #fresh = -1;
  #ttlTimer: NodeJS.Timeout | null = null;
  #expiresTimer: NodeJS.Timeout | null = null;
  #lastUsed: number;
  /** Deduplication keys of the messages in the queue, both ways. */
  readonly #dedupKeys = new Map<string, number>();
  readonly #dedupRefs = new Map<number, string>();

  constructor(def: QueueDefinition, id: string, store: QueueStore, settings: QueueSettings, svc: QueueServices, ownerConnection: number | null, recoveredBelow: number[] = [0]) {
    this.def = def;
    this.id = id;
    this.store = store;
    this.settings = settings;
    this.#svc = svc;
    this.ownerConnection = ownerConnection;
    this.#recoveredBelow = recoveredBelow;
    const s = settings;
    this.#plain =
      s.messageTtl === undefined && s.maxLength === undefined && s.maxLengthBytes === undefined && !s.countDeliveries && !s.deduplicate;
    this.#lastUsed = svc.now();
    this.#armExpires();
  }

  /** Rebuilds what lives only in memory from the stored messages (byte count, dedup keys). */
  async recover(): Promise<void> {
    if (this.settings.maxLengthBytes === undefined && !this.settings.deduplicate) return;
    await this.store.forEachReady((payload, ref, flags) => {
      if ((flags & MessageFlags.FIRE_MARK) !== 0) return;
      this.#readyBytes += storedBodySize(payload);
      if (this.settings.deduplicate) {
        const key = this.#dedupKey(payload);
        if (key !== undefined) {
          this.#dedupKeys.set(key, ref);
          this.#dedupRefs.set(ref, key);
        }
      }
    });
    this.#armTtl();
  }

  get name(): string {
    return this.def.name;
  }
  get consumerCount(): number {
    return this.#consumers.length;
  }
  get messageCount(): number {
    return this.store.readyCount;
  }
  get deleted(): boolean {
    return this.#deleted;
  }
  consumers(): readonly Consumer[] {
    return this.#consumers;
  }

  // ---- consumers

  addConsumer(c: Consumer): void {
    if (this.#consumers.some((x) => x.exclusive)) {
      throw accessRefused(`queue '${this.name}' in vhost '${this.def.vhost}' in exclusive use`);
    }
    if (c.exclusive && this.#consumers.length > 0) {
      throw accessRefused(`queue '${this.name}' in vhost '${this.def.vhost}' in exclusive use`);
    }
    let i = this.#consumers.length;
    // Highest priority first; equal priorities keep arrival order (stable insert). With a single
    // active consumer the order is arrival only: the first one is the active one.
    if (!this.settings.singleActiveConsumer) while (i > 0 && this.#consumers[i - 1]!.priority < c.priority) i--;
    this.#consumers.splice(i, 0, c);
    if (c.noAck) this.#noAckConsumers++;
    this.#hadConsumer = true;
    this.touch();
    this.dispatch();
  }

  removeConsumer(c: Consumer): void {
    const i = this.#consumers.indexOf(c);
    if (i < 0) return;
    this.#consumers.splice(i, 1);
    if (c.noAck) this.#noAckConsumers--;
    if (this.#rr > i) this.#rr--;
    if (this.#consumers.length === 0) {
      this.touch();
      if (this.#hadConsumer && this.def.autoDelete) this.#svc.unused(this);
    } else if (i === 0 && this.settings.singleActiveConsumer) this.dispatch(); // the next one takes over
  }

  markDeleted(): Consumer[] {
    this.#deleted = true;
    if (this.#ttlTimer !== null) clearTimeout(this.#ttlTimer);
    if (this.#expiresTimer !== null) clearTimeout(this.#expiresTimer);
    this.#ttlTimer = this.#expiresTimer = null;
    const cs = this.#consumers;
    this.#consumers = [];
    this.#noAckConsumers = 0;
    return cs;
  }

  /** The queue was used (declare, get, consume, cancel): x-expires counts from now. */
  touch(): void {
    if (this.settings.expires === undefined) return;
    this.#lastUsed = this.#svc.now();
    this.#armExpires();
  }

  #armExpires(): void {
    const ms = this.settings.expires;
    if (ms === undefined || this.#deleted || this.#expiresTimer !== null) return;
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, this.#lastUsed + ms - this.#svc.now()));
    this.#expiresTimer = setTimeout(() => {
      this.#expiresTimer = null;
      if (this.#deleted || this.#consumers.length > 0) return; // re-armed when the last one goes
      if (this.#svc.now() - this.#lastUsed >= ms) this.#svc.expired(this);
      else this.#armExpires();
    }, wait);
    this.#expiresTimer.unref();
  }

  // ---- in

  /** Stores a routed message and offers it to consumers. Returns its ref, or a NotEnqueued value. */
  enqueue(payload: Buffer, bodySize: number, ts: number, flags: number, priority: number): number {
    if (this.#plain) {
      if (this.#deliverDirect(payload, ts, flags)) return NotEnqueued.DELIVERED;
      const ref = this.store.enqueue(payload, ts, flags, priority);
      this.dispatch();
      return ref;
    }
    const s = this.settings;
    let key: string | undefined;
    if (s.deduplicate) {
      key = this.#dedupKey(payload);
      if (key !== undefined && this.#dedupKeys.has(key)) return NotEnqueued.DUPLICATE;
    }
    if (s.overflow !== 'drop-head' && this.#full(bodySize)) {
      if (s.overflow === 'reject-publish-dlx') this.#svc.deadLetter(this, payload, flags, 'maxlen');
      return NotEnqueued.REJECTED;
    }
    const ref = this.store.enqueue(payload, ts, flags, priority);
    this.#readyBytes += bodySize;
    if (key !== undefined) {
      this.#dedupKeys.set(key, ref);
      this.#dedupRefs.set(ref, key);
    }
    // A consumer that can take it now gets it even with a TTL of 0 (RabbitMQ's rule).
    this.#fresh = ref;
    this.dispatch();
    this.#fresh = -1;
    if (s.overflow === 'drop-head') this.#dropHeadWhileOver();
    if (s.messageTtl !== undefined) this.#armTtl();
    return ref;
  }

  #full(bodySize: number): boolean {
    const s = this.settings;
    if (s.maxLength !== undefined && this.store.readyCount >= s.maxLength) return true;
    return s.maxLengthBytes !== undefined && this.#readyBytes + bodySize > s.maxLengthBytes;
  }

  #over(): boolean {
    const s = this.settings;
    if (s.maxLength !== undefined && this.store.readyCount > s.maxLength) return true;
    return s.maxLengthBytes !== undefined && this.#readyBytes > s.maxLengthBytes && this.store.readyCount > 0;
  }

  #dropHeadWhileOver(): void {
    while (this.#over()) {
      const m = this.store.shift();
      if (m === null) {
        if (this.store.readyCount > 0) void this.store.fill().then(() => this.#dropHeadWhileOver(), () => undefined);
        return;
      }
      this.store.ack(m.ref);
      if ((m.flags & MessageFlags.FIRE_MARK) !== 0) continue;
      this.#gone(m.ref, storedBodySize(m.payload));
      this.#svc.deadLetter(this, m.payload, m.flags, 'maxlen');
    }
  }

  #dedupKey(payload: Buffer): string | undefined {
    const props = this.#view.parse(payload).props;
    const v = this.#svc.format.header(props, DEDUP_HEADER) ?? this.#svc.format.property(props, 'message_id');
    if (v === undefined || v === null) return undefined;
    return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
  }

  /** A message left for good (acked, expired, dropped, dead-lettered): forget what it held. */
  #forget(ref: number): void {
    if (this.#plain) return;
    const key = this.#dedupRefs.get(ref);
    if (key !== undefined) {
      this.#dedupRefs.delete(ref);
      if (this.#dedupKeys.get(key) === ref) this.#dedupKeys.delete(key);
    }
  }

  /** Bookkeeping for a message leaving the ready set. */
  #gone(ref: number, bodySize: number): void {
    this.#readyBytes -= bodySize;
    this.#forget(ref);
  }

  // ---- out

  /** Takes one ready message for basic.get; may need a disk read first. */
  async get(): Promise<StoredMessage | null> {
    this.touch();
    for (;;) {
      const m = this.#take();
      if (m !== null) return m;
      if (this.store.readyCount === 0) return null;
      await this.store.fill();
    }
  }

  #recovered(m: StoredMessage): boolean {
    const below = this.#recoveredBelow;
    if (below.length === 1) return m.ref < below[0]!;
    return Math.floor(m.ref / 256) < (below[m.ref % 256] ?? 0);
  }

  /**
   * The next ready message. Transient messages that were in a durable queue's log when the
   * broker restarted are dropped here, lazily, rather than by scanning the queue at start-up;
   * expired ones are dead-lettered here.
   */
  #take(): StoredMessage | null {
    for (;;) {
      const m = this.store.shift();
      if (m === null) return null;
      if ((m.flags & MessageFlags.FIRE_MARK) !== 0) {
        this.store.ack(m.ref);
        continue;
      }
      if ((m.flags & MessageFlags.PERSISTENT) === 0 && this.#recovered(m)) {
        if (!this.#plain) this.#gone(m.ref, storedBodySize(m.payload));
        this.store.ack(m.ref);
        continue;
      }
      if (this.#plain && (m.flags & MessageFlags.EXPIRES) === 0) return m;
      const size = storedBodySize(m.payload);
      this.#readyBytes -= size;
      if (this.#isExpired(m, this.#svc.now())) {
        this.#forget(m.ref);
        this.store.ack(m.ref);
        this.#svc.deadLetter(this, m.payload, m.flags, 'expired');
        continue;
      }
      const n = m.redelivered && this.settings.countDeliveries ? this.store.requeueCount(m.ref) : 0;
      if (n > 0) {
        const props = this.#view.parse(m.payload).props;
        return { ...m, payload: withStoredProps(m.payload, this.#svc.format.withIntHeader(props, DELIVERY_COUNT, n)) };
      }
      return m;
    }
  }

  #isExpired(m: StoredMessage, now: number): boolean {
    if (m.ref === this.#fresh) return false;
    const ttl = this.settings.messageTtl;
    if (ttl !== undefined && m.ts + ttl <= now) return true;
    if ((m.flags & MessageFlags.EXPIRES) === 0) return false;
    const exp = this.#svc.format.expiration(this.#view.parse(m.payload).props);
    return exp !== undefined && m.ts + Number(exp) <= now;
  }

  /**
   * An empty queue whose consumers are all no-ack hands a message over without storing it: it
   * is settled the moment it is sent, so a log append, a window entry and an ack record would
   * be written only to be dropped (RabbitMQ's classic queues skip them too). Not for a persistent
   * message in a durable queue, whose confirm promises it was stored.
   */
  #deliverDirect(payload: Buffer, ts: number, flags: number): boolean {
    const n = this.#consumers.length;
    if (n === 0 || this.#noAckConsumers !== n || this.store.readyCount !== 0 || this.#dispatching || this.#deleted) return false;
    if ((flags & MessageFlags.PERSISTENT) !== 0 && this.def.durable) return false;
    const c = this.#nextConsumer();
    if (c === null) return false;
    // No-ack sinks do not keep the message object, so one per queue serves every hand-over.
    const m = this.#handOver;
    m.payload = payload;
    m.ts = ts;
    m.flags = flags;
    c.sink.deliver(c, this, m);
    m.payload = NO_PAYLOAD;
    return true;
  }

  /** Hands ready messages to consumers with credit until one side runs out. */
  dispatch(): void {
    if (this.#dispatching || this.#deleted) return;
    this.#dispatching = true;
    try {
      const cs = this.#consumers;
      while (cs.length > 0 && this.store.readyCount > 0) {
        const c = this.#nextConsumer();
        if (c === null) break;
        const m = this.#take();
        if (m === null) {
          if (this.store.readyCount > 0) this.#fillThenDispatch();
          break;
        }
        c.sink.deliver(c, this, m);
        if (c.noAck) this.ack(m.ref);
      }
    } finally {
      this.#dispatching = false;
    }
  }

  #fillThenDispatch(): void {
    if (this.#filling) return;
    this.#filling = true;
    this.store.fill().then(
      () => {
        this.#filling = false;
        this.dispatch();
      },
      () => {
        this.#filling = false;
      },
    );
  }

  /** Round-robin over the consumers of the highest priority that has credit. */
  #nextConsumer(): Consumer | null {
    const cs = this.#consumers;
    if (this.settings.singleActiveConsumer) {
      // Two consumers never work the queue at once (RabbitMQ 3.10): the next one starts only
      // once the previous one's deliveries are all acked or returned.
      const c = cs[0]!;
      if (this.store.unackedCount > c.sink.unackedOf(c)) return null;
      return c.sink.canAccept(c) ? c : null;
    }
    const n = cs.length;
    let best = -1;
    let bestPriority = -Infinity;
    for (let k = 0; k < n; k++) {
      const i = (this.#rr + k) % n;
      const c = cs[i]!;
      if (c.priority > bestPriority && c.sink.canAccept(c)) {
        best = i;
        bestPriority = c.priority;
        if (c.priority === cs[0]!.priority) break;
      }
    }
    if (best < 0) return null;
    this.#rr = (best + 1) % n;
    return cs[best]!;
  }

  // ---- settlement of handed-out messages

  ack(ref: number): void {
    this.store.ack(ref);
    this.#forget(ref);
  }

  /** nack/reject with requeue, or a closed channel: back to its place, unless past the delivery limit. */
  requeue(ref: number, bodySize: number): void {
    if (this.settings.countDeliveries) {
      const n = this.store.requeueCount(ref) + 1;
      const limit = this.settings.deliveryLimit;
      if (limit !== undefined && n > limit) {
        this.#settleWithPayload(ref, (payload, flags) => this.#svc.deadLetter(this, payload, flags, 'delivery_limit'));
        return;
      }
      this.store.requeue(ref, n);
    } else {
      this.store.requeue(ref);
    }
    this.#readyBytes += bodySize;
    if (this.settings.messageTtl !== undefined) this.#armTtl();
  }

  /** nack/reject without requeue: retried per x-retry-delays, else dead-lettered, else dropped. */
  reject(ref: number): void {
    const s = this.settings;
    if (s.retryDelays !== undefined) {
      const delays = s.retryDelays;
      this.#settleWithPayload(ref, (payload, flags) => {
        const done = Number(this.#svc.format.header(this.#view.parse(payload).props, RETRY_COUNT) ?? 0) || 0;
        if (done < delays.length) this.#svc.retry(this, payload, flags, done + 1, delays[done]!);
        else this.#svc.deadLetter(this, payload, flags, 'rejected');
      });
      return;
    }
    if (s.deadLetterExchange !== undefined) {
      this.#settleWithPayload(ref, (payload, flags) => this.#svc.deadLetter(this, payload, flags, 'rejected'));
      return;
    }
    this.ack(ref);
  }

  /**
   * Reads a handed-out message back (it is not kept in memory), then settles it and calls fn.
   * One read at a time per queue, so dead-letters leave in the order they were rejected.
   */
  #settleWithPayload(ref: number, fn: (payload: Buffer, flags: number) => void): void {
    const read = this.#settling.then(() => this.store.read(ref));
    this.#settling = read.then(
      (m) => {
        this.ack(ref);
        if (m !== null && !this.#deleted) fn(m.payload, m.flags);
      },
      () => this.ack(ref),
    );
  }

  // ---- expiry

  /** A message's own expiry is due (from the broker's expiry schedule). */
  expireRef(ref: number): void {
    if (this.#deleted) return;
    this.store.read(ref).then(
      (m) => {
        if (m === null || this.#deleted || !this.store.discard(ref)) return; // consumed or gone meanwhile
        this.#gone(ref, storedBodySize(m.payload));
        this.#svc.deadLetter(this, m.payload, m.flags, 'expired');
      },
      () => undefined,
    );
  }

  #armTtl(): void {
    const ttl = this.settings.messageTtl;
    if (ttl === undefined || this.#ttlTimer !== null || this.#deleted || this.store.readyCount === 0) return;
    const head = this.store.peek();
    if (head === null) {
      void this.store.fill().then(() => this.#armTtl(), () => undefined);
      return;
    }
    const wait = Math.min(MAX_TIMER_MS, Math.max(0, head.ts + ttl - this.#svc.now()));
    this.#ttlTimer = setTimeout(() => {
      this.#ttlTimer = null;
      this.#expireHead();
    }, wait);
    this.#ttlTimer.unref();
  }

  #expireHead(): void {
    if (this.#deleted) return;
    const now = this.#svc.now();
    for (;;) {
      const head = this.store.peek();
      if (head === null) {
        if (this.store.readyCount > 0) void this.store.fill().then(() => this.#expireHead(), () => undefined);
        return;
      }
      const mark = (head.flags & MessageFlags.FIRE_MARK) !== 0;
      if (!mark && !this.#isExpired(head, now)) break;
      const m = this.store.shift()!;
      this.store.ack(m.ref);
      if (mark) continue;
      this.#gone(m.ref, storedBodySize(m.payload));
      this.#svc.deadLetter(this, m.payload, m.flags, 'expired');
    }
    this.#armTtl();
  }

  /** Removes every ready message; returns how many. */
  purge(): number {
    const n = this.store.purge();
    this.#readyBytes = 0;
    // Handed-out messages lose their keys too: a duplicate of one may be enqueued again.
    this.#dedupKeys.clear();
    this.#dedupRefs.clear();
    return n;
  }

  describe(): string {
    return describe('queue', this.name, this.def.vhost);
  }
}

