/**
 * What the broker keeps for later: delayed messages (x-delayed-message), retries
 * (x-retry-delays) and per-message expiry, each in its own FileScheduleStore with a runner that
 * fires entries when due.
 *
 * Exactly once across kill -9: after the fired copies, each queue gets a fire mark naming the
 * entries (#markFired), in the same log, so it is on disk only if the copies before it are. The
 * schedule's done mark comes a round later; if the process dies in between, the entry is due
 * again after restart, and the marks found in the queues' tails (#readFireMarks) say which
 * queues already hold it.
 */
import { FileScheduleStore, type ScheduledEntry, type Storage } from '../../storage/mod.js';
import { destKey, type DestinationKey } from '../exchange/exchange.js';
import type { MessageFormat } from '../message-format.js';
import { encodeStoredMessage, MessageFlags, StoredMessageView, withStoredProps } from '../message.js';
import type { PublishFlow } from '../publish-flow.js';
import type { Queue } from '../queue/queue.js';
import type { Router } from '../routing/router.js';
import type { Vhost } from '../vhost/vhost.js';
import { ScheduleRunner } from './schedule-runner.js';
import { decodeWork, delayGroup, encodeEnqueue, encodeExpire, encodeRoute, EXPIRY_GROUP, retryGroup } from './scheduled-work.js';

/** What firing needs from the broker. */
export interface DeliveryHost {
  readonly format: MessageFormat;
  readonly router: Router;
  vhost(name: string): Vhost | undefined;
  queueById(id: string): Queue | undefined;
  /** Every queue, for the recovery check. */
  queues(): Iterable<Queue>;
  /** Stores a routed message in each destination queue. */
  deliverTo(vh: Vhost, dests: Set<DestinationKey>, payload: Buffer, props: Buffer, bodySize: number, flags: number): void;
  onError(err: unknown, what: string): void;
  /** Told when delayed messages are due, so that publishers yield to firing them. */
  readonly flow: PublishFlow;
}

const EMPTY = Buffer.alloc(0);

/**
 * How far back from the end of each queue's log recovery looks for fire marks. A mark matters
 * only until the done marks of its batch are stored, one commit round later (milliseconds);
 * ten seconds covers rounds stalled by a very slow disk.
 */
const FIRE_MARK_WINDOW_MS = 10_000;

export interface DelayedMessage {
  dueAt: number;
  routingKey: string;
  body: Buffer;
  props: Buffer;
}

/**
 * When a message published to a delayed exchange is due: `x-deliver-at` (ms since the epoch,
 * Sluice's absolute form, as RocketMQ's delivery timestamp) or else now + `x-delay` (ms, as
 * RabbitMQ's plugin). Not a finite number → 0 (routed at once).
 */
export function delayedDueAt(format: MessageFormat, props: Buffer, now: number): number {
  const at = format.header(props, 'x-deliver-at');
  if (at !== undefined) {
    const t = Number(at);
    return Number.isFinite(t) ? t : 0;
  }
  const delay = Number(format.header(props, 'x-delay') ?? 0);
  return Number.isFinite(delay) ? now + delay : 0;
}

export class ScheduledDelivery {
  readonly #host: DeliveryHost;
  #delays!: ScheduleRunner;
  #expiry!: ScheduleRunner;
  /** Queues fired into by the current batch of delayed entries, with the entry ids. */
  readonly #firedInto = new Map<Queue, number[]>();
  /** After an unclean stop: entries that already reached some queues before it (#readFireMarks). */
  #alreadyFired: Map<number, Set<string>> | null = null;

  private constructor(host: DeliveryHost) {
    this.#host = host;
  }

  /** Opens the schedules and starts firing; call once the queues are loaded. */
  static async open(storage: Storage, host: DeliveryHost): Promise<ScheduledDelivery> {
    const sd = new ScheduledDelivery(host);
    // Delays and retries must survive kill -9 ('fsync'); expiry entries only save a wait for the
    // head, so the page cache is enough for them.
    const delays = await FileScheduleStore.open(storage, 'delays', { durability: 'fsync' });
    const expiry = await FileScheduleStore.open(storage, 'expiry', { durability: 'os' });
    sd.#delays = new ScheduleRunner(delays.store, (e) => sd.#fireDelay(e));
    sd.#delays.afterBatch = () => sd.#markFired();
    sd.#delays.flow = host.flow;
    // Entries due before the restart may have fired in the last rounds before a kill -9 with
    // their done marks lost: the fire marks in the queues say where they already went.
    const next = delays.store.nextDueAt();
    if (next !== null && next <= Date.now() + 1000) sd.#alreadyFired = await sd.#readFireMarks();
    sd.#expiry = new ScheduleRunner(expiry.store, (e) => sd.#fireExpiry(e));
    sd.#delays.onError = (e) => host.onError(e, 'delayed delivery');
    sd.#expiry.onError = (e) => host.onError(e, 'message expiry');
    sd.#delays.start();
    sd.#expiry.start();
    return sd;
  }

  /** A message published to an x-delayed-message exchange, routed through it when due. */
  delay(dueAt: number, vhost: string, exchange: string, flags: number, storedMessage: Buffer): void {
    this.#delays.add(dueAt, delayGroup(vhost, exchange), encodeRoute(flags, vhost, storedMessage));
  }

  /** x-retry-delays: the message comes back to `q` after `delayMs`, counting the attempt in x-retry-count. */
  retry(q: Queue, payload: Buffer, flags: number, attempt: number, delayMs: number): void {
    const props = new StoredMessageView().parse(payload).props;
    const again = withStoredProps(payload, this.#host.format.withIntHeader(props, 'x-retry-count', attempt));
    this.#delays.add(Date.now() + delayMs, retryGroup(q.def.vhost, q.name), encodeEnqueue(flags & MessageFlags.PERSISTENT, q.def.vhost, q.name, again));
  }

  /** A message's own expiration: removed from `q` at `at` if still ready then. */
  expire(at: number, q: Queue, ref: number): void {
    this.#expiry.add(at, EXPIRY_GROUP, encodeExpire(q.id, ref));
  }

  /** Pending delayed messages per exchange of `vhost`. */
  delayedCounts(vhost: string): Map<string, number> {
    const out = new Map<string, number>();
    const prefix = delayGroup(vhost, '');
    for (const [group, n] of this.#delays.store.groupCounts()) {
      if (group.startsWith(prefix)) out.set(group.slice(prefix.length), n);
    }
    return out;
  }

  /** Pending delayed messages of one exchange, in due order. */
  async browseDelayed(vhost: string, exchange: string, limit: number): Promise<DelayedMessage[]> {
    const entries = await this.#delays.store.browse({ group: delayGroup(vhost, exchange), limit });
    const out: DelayedMessage[] = [];
    for (const e of entries) {
      const w = decodeWork(e.payload);
      if (w === null || w.kind !== 1) continue;
      const v = new StoredMessageView().parse(w.message);
      out.push({ dueAt: e.dueAt, routingKey: v.routingKey, body: v.body, props: v.props });
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#delays?.close();
    await this.#expiry?.close();
  }

  /** Fires a delayed message or a retry, into the queues that do not hold it yet. */
  #fireDelay(e: ScheduledEntry): void {
    const w = decodeWork(e.payload);
    if (w === null || w.kind === 3) return;
    const host = this.#host;
    const vh = host.vhost(w.vhost);
    if (vh === undefined) return;
    const v = new StoredMessageView().parse(w.message);
    const props = v.props;
    const skip = this.#alreadyFired?.get(e.id);
    let dests: Set<DestinationKey>;
    if (w.kind === 1) {
      const ex = vh.exchanges.get(v.exchange);
      if (ex === undefined) return; // deleted while the message waited: dropped, as the plugin does
      dests = host.router.route(vh, ex, host.router.freshMessage(v.routingKey, props), true);
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
    if (dests.size > 0) host.deliverTo(vh, dests, w.message, props, v.bodySize, w.flags);
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
    for (const q of this.#host.queues()) {
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
    this.#host.queueById(w.queueId)?.expireRef(w.ref);
  }
}
