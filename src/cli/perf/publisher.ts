/*
 * One producer: a connection, channel 1, an optional confirm window, an optional rate.
 *
 * Every message is the same bytes except the send time, so the whole publish
 *
 *   method frame  basic.publish(exchange, routing-key)
 *   header frame  body-size, properties (delivery-mode, headers for a headers exchange)
 *   body frames   first 8 bytes: Float64 LE send time (nowMs); the rest 'x'
 *
 * is built once as a template. A pump turn copies the template n times into one fresh buffer
 * (TypedArray#set: a memcpy, no allocation per copy), stamps the time in place and hands the
 * batch to one socket.write; then it yields with setImmediate so acks and deliveries are read
 * between batches. It stops at the confirm window, the rate, connection.blocked or socket
 * backpressure, and the matching event (confirm, timer, unblocked, 'drain') wakes it.
 * Messages over LARGE are not copied: a small stamped prefix and the shared, never-modified
 * rest of the template go out as two writes under cork().
 */
import { ArgWriter, M, PROP_DELIVERY_MODE, PROP_HEADERS, contentTemplate, encodeTable, nowMs } from './amqp-wire.js';
import { ConfirmTracker } from './confirm-tracker.js';
import type { BlockListener, ConfirmListener, PerfConnection } from './perf-connection.js';
import type { PerfStats } from './perf-stats.js';

/** Target bytes per socket.write of small messages. */
const BATCH_BYTES = 128 * 1024;
/** Messages longer than this are written as prefix + shared template instead of copied. */
const LARGE = 64 * 1024;
/** A rate-limited producer that fell behind (GC, a busy loop) skips at most this much backlog. */
const MAX_CATCH_UP_MS = 100;

export interface PublisherSpec {
  exchange: string;
  routingKey: string;
  /** Message headers (for a headers exchange), or null. */
  headers: Record<string, string> | null;
}

export interface PublisherOptions {
  size: number;
  /** Messages per second, 0 for as fast as possible. */
  rate: number;
  persistent: boolean;
  /** Outstanding unconfirmed publishes allowed; 0 for no confirm mode. */
  confirm: number;
  /** Messages to publish, 0 for no limit. */
  count: number;
}

const CHANNEL = 1;

export class Publisher implements ConfirmListener, BlockListener {
  #conn: PerfConnection;
  #stats: PerfStats;
  #opts: PublisherOptions;
  #template: Buffer;
  #stampAt: number;
  #msgLen: number;
  #batchMsgs: number;
  #tracker: ConfirmTracker | null;
  #running = false;
  #scheduled = false;
  #waitingDrain = false;
  #timer: NodeJS.Timeout | null = null;
  #rateBase = 0;
  #rateSent = 0;
  sent = 0;
  /** Set when count messages have been published (and, with confirms, settled). */
  finished = false;
  /** nowMs() when finished was set. */
  finishedAt = 0;
  readonly #pumpFn = (): void => this.#pump();
  readonly #onDrainFn = (): void => {
    this.#waitingDrain = false;
    this.#schedule();
  };

  private constructor(conn: PerfConnection, spec: PublisherSpec, opts: PublisherOptions, stats: PerfStats) {
    this.#conn = conn;
    this.#stats = stats;
    this.#opts = opts;
    this.#tracker = opts.confirm > 0 ? new ConfirmTracker(opts.confirm) : null;
    let flags = PROP_DELIVERY_MODE;
    let props = Buffer.from([opts.persistent ? 2 : 1]);
    if (spec.headers !== null) {
      flags |= PROP_HEADERS;
      props = Buffer.concat([encodeTable(spec.headers), props]);
    }
    // reserved-1, exchange, routing-key, mandatory, immediate
    const args = new ArgWriter().u16(0).shortstr(spec.exchange).shortstr(spec.routingKey).bit(false).bit(false).done();
    const t = contentTemplate(CHANNEL, M.BasicPublish, args, opts.size, conn.frameMax, flags, props, 0x78);
    this.#template = t.bytes;
    this.#stampAt = opts.size >= 8 ? t.bodyOffset : -1;
    this.#msgLen = t.bytes.length;
    this.#batchMsgs = Math.max(1, Math.floor(BATCH_BYTES / this.#msgLen));
  }

  static async create(conn: PerfConnection, spec: PublisherSpec, opts: PublisherOptions, stats: PerfStats): Promise<Publisher> {
    await conn.openChannel(CHANNEL);
    const p = new Publisher(conn, spec, opts, stats);
    conn.setConfirmListener(CHANNEL, p);
    conn.addBlockListener(p);
    if (opts.confirm > 0) await conn.confirmSelect(CHANNEL);
    return p;
  }

  start(): void {
    this.#running = true;
    this.#rateBase = nowMs();
    this.#rateSent = 0;
    this.#schedule();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  get outstanding(): number {
    return this.#tracker === null ? 0 : this.#tracker.outstanding;
  }

  #schedule(): void {
    if (this.#scheduled || !this.#running) return;
    this.#scheduled = true;
    setImmediate(this.#pumpFn);
  }

  #pump(): void {
    this.#scheduled = false;
    if (!this.#running || this.#waitingDrain || this.#conn.blocked || this.#conn.failed !== null) return;
    const opts = this.#opts;
    let n = this.#batchMsgs;
    if (opts.count > 0) {
      const left = opts.count - this.sent;
      if (left <= 0) {
        this.#checkFinished();
        return;
      }
      if (left < n) n = left;
    }
    const tracker = this.#tracker;
    if (tracker !== null) {
      const credit = opts.confirm - tracker.outstanding;
      if (credit <= 0) return; // onConfirm reschedules
      if (credit < n) n = credit;
    }
    const now = nowMs();
    if (opts.rate > 0) {
      let elapsed = now - this.#rateBase;
      let due = Math.floor((elapsed * opts.rate) / 1000) + 1 - this.#rateSent;
      if (due > (opts.rate * MAX_CATCH_UP_MS) / 1000 + 1) {
        this.#rateBase = now;
        this.#rateSent = 0;
        elapsed = 0;
        due = 1;
      }
      if (due <= 0) {
        const wait = ((this.#rateSent * 1000) / opts.rate) - elapsed;
        this.#timer = setTimeout(this.#pumpFn, Math.max(1, Math.ceil(wait)));
        this.#scheduled = true;
        return;
      }
      if (due < n) n = due;
      this.#rateSent += n;
    }
    let ok: boolean;
    if (this.#msgLen > LARGE) ok = this.#writeLarge(n, now);
    else ok = this.#writeBatch(n, now);
    this.sent += n;
    this.#stats.published += n;
    if (tracker !== null) tracker.published(n);
    if (!ok) {
      this.#waitingDrain = true;
      this.#conn.socket.once('drain', this.#onDrainFn);
      return;
    }
    this.#schedule();
  }

  #writeBatch(n: number, now: number): boolean {
    const len = this.#msgLen;
    const t = this.#template;
    const stamp = this.#stampAt;
    const buf = Buffer.allocUnsafe(n * len);
    for (let i = 0, off = 0; i < n; i++, off += len) {
      buf.set(t, off);
      if (stamp >= 0) buf.writeDoubleLE(now, off + stamp);
    }
    return this.#conn.writeRaw(buf);
  }

  #writeLarge(n: number, now: number): boolean {
    const t = this.#template;
    const cut = this.#stampAt >= 0 ? this.#stampAt + 8 : 0;
    const rest = t.subarray(cut);
    const socket = this.#conn.socket;
    socket.cork();
    let ok = true;
    for (let i = 0; i < n; i++) {
      if (cut > 0) {
        const head = Buffer.allocUnsafe(cut);
        head.set(t.subarray(0, cut), 0);
        head.writeDoubleLE(now, this.#stampAt);
        ok = this.#conn.writeRaw(head);
      }
      ok = this.#conn.writeRaw(rest);
    }
    socket.uncork();
    return ok;
  }

  #checkFinished(): void {
    if (this.finished) return;
    if (this.#opts.count > 0 && this.sent >= this.#opts.count && this.outstanding === 0) {
      this.finished = true;
      this.finishedAt = nowMs();
    }
  }

  onConfirm(tag: number, multiple: boolean, nack: boolean): void {
    const n = this.#tracker === null ? 0 : this.#tracker.settle(tag, multiple);
    if (nack) this.#stats.nacked += n;
    else this.#stats.confirmed += n;
    if (this.#opts.count > 0 && this.sent >= this.#opts.count) this.#checkFinished();
    else this.#schedule();
  }

  onReturn(): void {
    this.#stats.returned++;
  }

  onBlocked(blocked: boolean, reason: string): void {
    if (blocked) {
      this.#stats.blocked++;
      process.stderr.write(`sluice perf: connection.blocked (${reason}); publishing paused\n`);
    } else {
      this.#stats.blocked--;
      process.stderr.write('sluice perf: connection.unblocked; publishing resumed\n');
      this.#schedule();
    }
  }
}
