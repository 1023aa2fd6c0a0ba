/*
 * A minimal, fast AMQP 0-9-1 client connection for the load generator.
 *
 * Setup (handshake, declares, qos, consume) is promise-based and may allocate. The hot paths
 * are not: incoming frames are read by offset from the socket chunk (frame-reader.ts);
 * basic.deliver + header + body frames become one DeliveryListener.onDelivery(tag, sentAt)
 * call, basic.ack/nack one ConfirmListener.onConfirm call; acks the consumer sends are
 * written into one output buffer that is flushed once per socket chunk.
 *
 * Anything the server closes (channel.close, connection.close) or a lost socket is fatal for
 * a benchmark: the connection answers close-ok and reports the error through onError once.
 */
import { connect as netConnect, type Socket } from 'node:net';
import {
  ArgWriter,
  FRAME_BODY,
  FRAME_END,
  FRAME_HEADER,
  FRAME_HEARTBEAT,
  FRAME_METHOD,
  M,
  PROTOCOL_HEADER,
  contentTemplate,
  methodFrame,
  methodName,
  nowMs,
  readLongStr,
  readShortStr,
  readTableStrings,
  readU64,
  skipTable,
  writeFrameHeader,
  writeU64,
  type SimpleValue,
} from './amqp-wire.js';
import type { AmqpUri } from './amqp-uri.js';
import { FrameReader, type FrameSink } from './frame-reader.js';

export interface DeliveryListener {
  /** A whole message arrived; sentAt is the Float64 in its first 8 body bytes, or NaN. */
  onDelivery(tag: number, sentAt: number): void;
}

export interface ConfirmListener {
  onConfirm(tag: number, multiple: boolean, nack: boolean): void;
  onReturn(): void;
}

export interface BlockListener {
  onBlocked(blocked: boolean, reason: string): void;
}

/** A method reply during setup: its payload copied, and where its arguments start. */
export interface Reply {
  key: number;
  buf: Buffer;
  off: number;
}

interface Waiter {
  keys: readonly number[];
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
}

const CONTENT_NONE = 0;
const CONTENT_DELIVER = 1;
const CONTENT_SKIP = 2;
/** basic.ack on the wire: 7 header + 4 ids + 8 tag + 1 bits + end. */
const ACK_FRAME_SIZE = 21;
const OUT_SIZE = 16 * 1024;

class ChannelState {
  deliveries: DeliveryListener | null = null;
  confirms: ConfirmListener | null = null;
  waiter: Waiter | null = null;
  content = CONTENT_NONE;
  tag = 0;
  bodySize = 0;
  bodyLeft = 0;
  sentAt = NaN;
}

export interface ConnectOptions {
  /** Shown in the broker's management as the connection name. */
  name: string;
  /** Upper bound the client asks for in tune-ok (the server's value if smaller). */
  frameMax?: number;
  timeoutMs?: number;
}

export class PerfError extends Error {}

export class PerfConnection implements FrameSink {
  readonly socket: Socket;
  #reader: FrameReader;
  #channels: ChannelState[] = [];
  #out: Buffer | null = null;
  #outPos = 0;
  #failed: Error | null = null;
  #closing = false;
  #closed = false;
  #blockListeners: BlockListener[] = [];
  frameMax = 131072;
  channelMax = 2047;
  serverProperties = new Map<string, string>();
  /** Time the current socket chunk arrived (ms, nowMs clock); consumers take latency against it. */
  now = 0;
  blocked = false;
  /** Called once on the first fatal error (server close, socket loss, framing error). */
  onError: (err: Error) => void = () => {};

  private constructor(socket: Socket) {
    this.socket = socket;
    this.#reader = new FrameReader(this, 0);
    this.#channels[0] = new ChannelState();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.now = nowMs();
      try {
        this.#reader.push(chunk);
      } catch (e) {
        this.#fail(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      this.flush();
    });
    socket.on('error', (e) => this.#fail(new PerfError(`socket error: ${e.message}`)));
    socket.on('close', () => {
      this.#closed = true;
      if (!this.#closing) this.#fail(new PerfError('connection lost: the server closed the socket'));
    });
  }

  static async connect(uri: AmqpUri, opts: ConnectOptions): Promise<PerfConnection> {
    const socket = netConnect({ host: uri.host, port: uri.port });
    const conn = new PerfConnection(socket);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const timer = setTimeout(() => conn.#fail(new PerfError(`connecting to ${uri.host}:${uri.port}: no answer in ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      });
      await conn.#handshake(uri, opts);
    } catch (e) {
      socket.destroy();
      throw e instanceof PerfError ? e : new PerfError(`connecting to ${uri.host}:${uri.port}: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    return conn;
  }

  async #handshake(uri: AmqpUri, opts: ConnectOptions): Promise<void> {
    const start = this.#expect(0, [M.ConnectionStart]);
    this.socket.write(PROTOCOL_HEADER);
    const s = await start;
    // version-major, version-minor, server-properties, mechanisms, locales
    this.serverProperties = readTableStrings(s.buf, s.off + 2);
    const [mechanisms] = readLongStr(s.buf, skipTable(s.buf, s.off + 2));
    if (!mechanisms.split(' ').includes('PLAIN')) throw new PerfError(`server offers no PLAIN mechanism (${mechanisms})`);
    const clientProperties: Record<string, SimpleValue> = {
      product: 'sluice perf',
      platform: `Node.js ${process.version}`,
      connection_name: opts.name,
      capabilities: { publisher_confirms: true, 'basic.nack': true, 'connection.blocked': true, consumer_cancel_notify: true },
    };
    const tune = this.#expect(0, [M.ConnectionTune, M.ConnectionClose]);
    this.#send(
      methodFrame(
        0,
        M.ConnectionStartOk,
        new ArgWriter().table(clientProperties).shortstr('PLAIN').longstr(`\0${uri.user}\0${uri.password}`).shortstr('en_US').done(),
      ),
    );
    const t = await tune;
    if (t.key === M.ConnectionClose) throw this.#closeError('connection', t);
    const channelMax = t.buf.readUInt16BE(t.off);
    const frameMax = t.buf.readUInt32BE(t.off + 2);
    const want = opts.frameMax ?? 131072;
    this.frameMax = frameMax === 0 ? want : Math.min(frameMax, want);
    this.channelMax = channelMax === 0 ? 2047 : channelMax;
    this.#reader.maxPayload = this.frameMax;
    // heartbeat 0: a benchmark connection is never idle long enough to need them (§4.2.7).
    this.#send(methodFrame(0, M.ConnectionTuneOk, new ArgWriter().u16(this.channelMax).u32(this.frameMax).u16(0).done()));
    const open = this.#expect(0, [M.ConnectionOpenOk, M.ConnectionClose]);
    this.#send(methodFrame(0, M.ConnectionOpen, new ArgWriter().shortstr(uri.vhost).shortstr('').bit(false).done()));
    const o = await open;
    if (o.key === M.ConnectionClose) throw this.#closeError('connection', o);
  }

  /** "RabbitMQ 3.10.8" or "Sluice 0.1.0", from connection.start's server-properties. */
  get serverName(): string {
    return `${this.serverProperties.get('product') ?? '?'} ${this.serverProperties.get('version') ?? ''}`.trim();
  }

  get failed(): Error | null {
    return this.#failed;
  }

  // --- frame dispatch (hot) -------------------------------------------------------------

  onFrame(type: number, channel: number, buf: Buffer, start: number, end: number): void {
    const ch = this.#channels[channel];
    if (ch === undefined) throw new PerfError(`frame type ${type} on channel ${channel}, which is not open`);
    if (type === FRAME_METHOD) {
      const key = buf.readUInt32BE(start);
      switch (key) {
        case M.BasicDeliver: {
          // consumer-tag:shortstr delivery-tag:u64 redelivered:bit exchange routing-key
          ch.tag = readU64(buf, start + 5 + buf[start + 4]!);
          ch.content = CONTENT_DELIVER;
          return;
        }
        case M.BasicAck:
        case M.BasicNack:
          // delivery-tag:u64 then bits (multiple first)
          if (ch.confirms !== null) ch.confirms.onConfirm(readU64(buf, start + 4), (buf[start + 12]! & 1) === 1, key === M.BasicNack);
          return;
        case M.BasicReturn:
          ch.content = CONTENT_SKIP;
          if (ch.confirms !== null) ch.confirms.onReturn();
          return;
        case M.BasicGetOk:
          ch.content = CONTENT_SKIP;
          break;
      }
      this.#onMethod(key, channel, ch, buf, start, end);
    } else if (type === FRAME_HEADER) {
      // class-id:u16 weight:u16 body-size:u64 …
      const size = readU64(buf, start + 4);
      ch.bodySize = size;
      ch.bodyLeft = size;
      ch.sentAt = NaN;
      if (size === 0) this.#contentDone(ch);
    } else if (type === FRAME_BODY) {
      const n = end - start;
      if (ch.bodyLeft === ch.bodySize && n >= 8) ch.sentAt = buf.readDoubleLE(start);
      ch.bodyLeft -= n;
      if (ch.bodyLeft <= 0) this.#contentDone(ch);
    } else if (type === FRAME_HEARTBEAT) {
      this.#send(Buffer.from([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]));
    }
  }

  #contentDone(ch: ChannelState): void {
    if (ch.content === CONTENT_DELIVER && ch.deliveries !== null) ch.deliveries.onDelivery(ch.tag, ch.sentAt);
    ch.content = CONTENT_NONE;
  }

  #onMethod(key: number, channel: number, ch: ChannelState, buf: Buffer, start: number, end: number): void {
    const reply: Reply = { key, buf: Buffer.from(buf.subarray(start, end)), off: 4 };
    if (key === M.ConnectionClose) {
      this.#send(methodFrame(0, M.ConnectionCloseOk));
      if (this.#closing) {
        this.#resolveWaiter(ch, { ...reply, key: M.ConnectionCloseOk });
        return;
      }
      // Handshake waiters expecting close get it as a reply; otherwise it is fatal.
      if (ch.waiter !== null && ch.waiter.keys.includes(key)) this.#resolveWaiter(ch, reply);
      this.#fail(this.#closeError('connection', reply));
      this.socket.end();
      return;
    }
    if (key === M.ChannelClose) {
      this.#send(methodFrame(channel, M.ChannelCloseOk));
      this.#fail(this.#closeError(`channel ${channel}`, reply));
      return;
    }
    if (key === M.ConnectionBlocked || key === M.ConnectionUnblocked) {
      this.blocked = key === M.ConnectionBlocked;
      const reason = this.blocked ? readShortStr(reply.buf, 4)[0] : '';
      for (const l of this.#blockListeners) l.onBlocked(this.blocked, reason);
      return;
    }
    if (key === M.BasicCancel) {
      this.#fail(new PerfError(`the server cancelled the consumer on channel ${channel} (basic.cancel; queue deleted?)`));
      return;
    }
    if (key === M.ChannelFlow) {
      this.#send(methodFrame(channel, M.ChannelFlowOk, Buffer.from([buf[start + 4]!])));
      return;
    }
    if (ch.waiter !== null && ch.waiter.keys.includes(key)) {
      this.#resolveWaiter(ch, reply);
      return;
    }
    throw new PerfError(`unexpected ${methodName(key)} on channel ${channel}`);
  }

  #resolveWaiter(ch: ChannelState, r: Reply): void {
    const w = ch.waiter;
    ch.waiter = null;
    if (w !== null) w.resolve(r);
  }

  #closeError(scope: string, r: Reply): PerfError {
    // reply-code:u16 reply-text:shortstr class-id:u16 method-id:u16
    const code = r.buf.readUInt16BE(r.off);
    const [text, p] = readShortStr(r.buf, r.off + 2);
    const cause = r.buf.readUInt16BE(p) === 0 ? '' : ` (after ${methodName((r.buf.readUInt16BE(p) << 16) | r.buf.readUInt16BE(p + 2))})`;
    return new PerfError(`${scope} closed by the server: ${code} ${text}${cause}`);
  }

  #fail(err: Error): void {
    if (this.#failed !== null) return;
    this.#failed = err;
    for (const ch of this.#channels) {
      if (ch?.waiter) {
        const w = ch.waiter;
        ch.waiter = null;
        w.reject(err);
      }
    }
    if (!this.#closing) this.onError(err);
    if (!this.#closed) setTimeout(() => this.socket.destroy(), 200).unref();
  }

  // --- output -----------------------------------------------------------------------------

  #send(frame: Buffer): void {
    this.flush();
    if (!this.socket.destroyed) this.socket.write(frame);
  }

  /** Writes pre-built frames (publish batches); false when the socket wants 'drain'. */
  writeRaw(buf: Buffer): boolean {
    if (this.#outPos > 0) this.flush();
    return this.socket.write(buf);
  }

  /** Queues basic.ack (written at the end of the current socket chunk, or by flush()). */
  ack(channel: number, tag: number, multiple: boolean): void {
    let out = this.#out;
    if (out === null || this.#outPos + ACK_FRAME_SIZE > out.length) {
      this.flush();
      out = this.#out = Buffer.allocUnsafe(OUT_SIZE);
    }
    const p = this.#outPos;
    writeFrameHeader(out, p, FRAME_METHOD, channel, 13);
    out.writeUInt32BE(M.BasicAck, p + 7);
    writeU64(out, p + 11, tag);
    out[p + 19] = multiple ? 1 : 0;
    out[p + 20] = FRAME_END;
    this.#outPos = p + ACK_FRAME_SIZE;
  }

  flush(): void {
    if (this.#outPos === 0 || this.#out === null) return;
    const out = this.#out;
    const n = this.#outPos;
    this.#out = null;
    this.#outPos = 0;
    if (!this.socket.destroyed) this.socket.write(n === out.length ? out : out.subarray(0, n));
  }

  // --- setup methods ----------------------------------------------------------------------

  #expect(channel: number, keys: readonly number[]): Promise<Reply> {
    const ch = this.#channels[channel];
    if (ch === undefined) return Promise.reject(new PerfError(`channel ${channel} is not open`));
    if (this.#failed !== null) return Promise.reject(this.#failed);
    if (ch.waiter !== null) return Promise.reject(new PerfError(`channel ${channel}: a request is already outstanding`));
    return new Promise<Reply>((resolve, reject) => {
      ch.waiter = { keys, resolve, reject };
    });
  }

  /** Sends a method and waits for one of the reply keys. */
  async rpc(channel: number, key: number, args: Buffer, replies: readonly number[]): Promise<Reply> {
    const p = this.#expect(channel, replies);
    this.#send(methodFrame(channel, key, args));
    return p;
  }

  async openChannel(channel: number): Promise<void> {
    if (this.#channels[channel] !== undefined) throw new PerfError(`channel ${channel} is already open`);
    this.#channels[channel] = new ChannelState();
    await this.rpc(channel, M.ChannelOpen, new ArgWriter().shortstr('').done(), [M.ChannelOpenOk]);
  }

  setDeliveryListener(channel: number, l: DeliveryListener | null): void {
    this.#channels[channel]!.deliveries = l;
  }

  setConfirmListener(channel: number, l: ConfirmListener | null): void {
    this.#channels[channel]!.confirms = l;
  }

  addBlockListener(l: BlockListener): void {
    this.#blockListeners.push(l);
  }

  async exchangeDeclare(channel: number, name: string, type: string, durable: boolean): Promise<void> {
    // reserved, exchange, type, passive, durable, auto-delete, internal, no-wait, arguments
    const args = new ArgWriter().u16(0).shortstr(name).shortstr(type).bit(false).bit(durable).bit(false).bit(false).bit(false).table().done();
    await this.rpc(channel, M.ExchangeDeclare, args, [M.ExchangeDeclareOk]);
  }

  async exchangeDelete(channel: number, name: string): Promise<void> {
    await this.rpc(channel, M.ExchangeDelete, new ArgWriter().u16(0).shortstr(name).bit(false).bit(false).done(), [M.ExchangeDeleteOk]);
  }

  async queueDeclare(
    channel: number,
    name: string,
    o: { durable?: boolean; exclusive?: boolean; autoDelete?: boolean; passive?: boolean } = {},
  ): Promise<{ queue: string; messages: number; consumers: number }> {
    // reserved, queue, passive, durable, exclusive, auto-delete, no-wait, arguments
    const args = new ArgWriter()
      .u16(0)
      .shortstr(name)
      .bit(o.passive ?? false)
      .bit(o.durable ?? false)
      .bit(o.exclusive ?? false)
      .bit(o.autoDelete ?? false)
      .bit(false)
      .table()
      .done();
    const r = await this.rpc(channel, M.QueueDeclare, args, [M.QueueDeclareOk]);
    const [queue, p] = readShortStr(r.buf, r.off);
    return { queue, messages: r.buf.readUInt32BE(p), consumers: r.buf.readUInt32BE(p + 4) };
  }

  async queueBind(channel: number, queue: string, exchange: string, routingKey: string, args?: Record<string, SimpleValue>): Promise<void> {
    const a = new ArgWriter().u16(0).shortstr(queue).shortstr(exchange).shortstr(routingKey).bit(false).table(args).done();
    await this.rpc(channel, M.QueueBind, a, [M.QueueBindOk]);
  }

  async queueDelete(channel: number, queue: string): Promise<number> {
    const r = await this.rpc(channel, M.QueueDelete, new ArgWriter().u16(0).shortstr(queue).bit(false).bit(false).bit(false).done(), [M.QueueDeleteOk]);
    return r.buf.readUInt32BE(r.off);
  }

  async basicQos(channel: number, prefetch: number): Promise<void> {
    await this.rpc(channel, M.BasicQos, new ArgWriter().u32(0).u16(prefetch).bit(false).done(), [M.BasicQosOk]);
  }

  async confirmSelect(channel: number): Promise<void> {
    await this.rpc(channel, M.ConfirmSelect, new ArgWriter().bit(false).done(), [M.ConfirmSelectOk]);
  }

  async basicConsume(channel: number, queue: string, noAck: boolean, tag = ''): Promise<string> {
    // reserved, queue, consumer-tag, no-local, no-ack, exclusive, no-wait, arguments
    const a = new ArgWriter().u16(0).shortstr(queue).shortstr(tag).bit(false).bit(noAck).bit(false).bit(false).table().done();
    const r = await this.rpc(channel, M.BasicConsume, a, [M.BasicConsumeOk]);
    return readShortStr(r.buf, r.off)[0];
  }

  /** basic.get with no-ack; true if a message came (its content is skipped). */
  async basicGet(channel: number, queue: string): Promise<boolean> {
    const r = await this.rpc(channel, M.BasicGet, new ArgWriter().u16(0).shortstr(queue).bit(true).done(), [M.BasicGetOk, M.BasicGetEmpty]);
    return r.key === M.BasicGetOk;
  }

  /** One publish outside the hot path (churn tests). */
  publishOne(channel: number, exchange: string, routingKey: string, bodySize: number): void {
    const args = new ArgWriter().u16(0).shortstr(exchange).shortstr(routingKey).bit(false).bit(false).done();
    const t = contentTemplate(channel, M.BasicPublish, args, bodySize, this.frameMax, 0, Buffer.alloc(0), 0x78);
    if (t.bodyOffset >= 0 && bodySize >= 8) t.bytes.writeDoubleLE(nowMs(), t.bodyOffset);
    this.#send(t.bytes);
  }

  /** connection.close and wait for close-ok (at most timeoutMs), then drop the socket. */
  async close(timeoutMs = 5000): Promise<void> {
    if (this.#closed || this.#failed !== null) {
      this.socket.destroy();
      return;
    }
    this.#closing = true;
    const ch0 = this.#channels[0]!;
    const done = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      ch0.waiter = {
        keys: [M.ConnectionCloseOk],
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.#send(methodFrame(0, M.ConnectionClose, new ArgWriter().u16(200).shortstr('Goodbye').u16(0).u16(0).done()));
    await done;
    this.socket.destroy();
  }
}
