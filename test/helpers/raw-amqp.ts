/**
 * A deliberately small AMQP 0-9-1 client over a raw net.Socket, for tests that must send what
 * no well-behaved client would: bad end octets, oversized frames, content frames out of order,
 * methods on unopened channels. It uses the broker's codec only to encode and decode frames;
 * the assertions are about what the broker answers on the wire.
 */
import { connect, type Socket } from 'node:net';
import {
  decodeMethod,
  FrameHeader,
  NEED_MORE,
  parseFrame,
  PROTOCOL_HEADER,
  writeBodyFrames,
  writeMethod,
  writePropertiesFrame,
  FRAME_METHOD,
  type AmqpMethod,
  type AmqpMethodArgs,
  type BasicProperties,
} from '../../src/protocols/amqp091/codec/mod.js';

export interface RawFrame {
  type: number;
  channel: number;
  payload: Buffer;
  method?: AmqpMethod;
}

export class RawAmqp {
  readonly socket: Socket;
  /** Set once the socket has closed (either side). */
  closed = false;
  readonly received: RawFrame[] = [];
  /** Bytes received before anything was parsed (the protocol header reply, garbage answers). */
  rawBytes = Buffer.alloc(0);
  frameMax = 131072;
  #buf = Buffer.alloc(0);
  #parseFrames = false;
  #waiters: Array<() => void> = [];
  readonly #closedPromise: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => this.#onData(d));
    socket.on('error', () => undefined);
    this.#closedPromise = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        resolve();
        this.#wake();
      }),
    );
  }

  /** A bare TCP connection; nothing sent yet. */
  static async open(port: number, host = '127.0.0.1'): Promise<RawAmqp> {
    const socket = connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawAmqp(socket);
  }

  /** Protocol header, start-ok (PLAIN guest/guest), tune-ok, open; then channel 1 if asked. */
  static async connect(port: number, opts: { channel?: boolean; vhost?: string } = {}): Promise<RawAmqp> {
    const c = await RawAmqp.open(port);
    c.startFrames();
    c.write(PROTOCOL_HEADER);
    await c.expectMethod('connection.start');
    c.send(0, { name: 'connection.start-ok', args: { clientProperties: { product: 'raw-test' }, mechanism: 'PLAIN', response: '\u0000guest\u0000guest', locale: 'en_US' } });
    const tune = await c.expectMethod('connection.tune');
    const t = tune.args as { frameMax: number; channelMax: number };
    c.frameMax = t.frameMax;
    c.send(0, { name: 'connection.tune-ok', args: { channelMax: t.channelMax, frameMax: t.frameMax, heartbeat: 0 } });
    c.send(0, { name: 'connection.open', args: { virtualHost: opts.vhost ?? '/' } });
    await c.expectMethod('connection.open-ok');
    if (opts.channel !== false) {
      c.send(1, { name: 'channel.open', args: {} });
      await c.expectMethod('channel.open-ok');
    }
    return c;
  }

  /** From now on, incoming bytes are parsed as frames (before: kept raw). */
  startFrames(): void {
    this.#parseFrames = true;
  }

  write(buf: Buffer): void {
    this.socket.write(buf);
  }

  send(channel: number, m: AmqpMethodArgs): void {
    const buf = Buffer.alloc(65536);
    const n = writeMethod(buf, 0, channel, m);
    this.write(buf.subarray(0, n));
  }

  /** Encodes a method frame without writing it (to corrupt it first). */
  static encode(channel: number, m: AmqpMethodArgs): Buffer {
    const buf = Buffer.alloc(65536);
    return Buffer.from(buf.subarray(0, writeMethod(buf, 0, channel, m)));
  }

  static header(channel: number, bodySize: number, props: BasicProperties = {}): Buffer {
    const buf = Buffer.alloc(65536);
    return Buffer.from(buf.subarray(0, writePropertiesFrame(buf, 0, channel, bodySize, props)));
  }

  static body(channel: number, body: Buffer, frameMax = 131072): Buffer {
    const buf = Buffer.alloc(body.length + 8 * (Math.ceil(body.length / (frameMax - 8)) + 1));
    return Buffer.from(buf.subarray(0, writeBodyFrames(buf, 0, channel, body, 0, body.length, frameMax)));
  }

  /** basic.publish + header + body frames, as one buffer. */
  static publish(channel: number, exchange: string, routingKey: string, body: Buffer, opts: { mandatory?: boolean; immediate?: boolean; props?: BasicProperties } = {}): Buffer {
    return Buffer.concat([
      RawAmqp.encode(channel, { name: 'basic.publish', args: { exchange, routingKey, mandatory: opts.mandatory ?? false, immediate: opts.immediate ?? false } }),
      RawAmqp.header(channel, body.length, opts.props ?? {}),
      RawAmqp.body(channel, body),
    ]);
  }

  #onData(d: Buffer): void {
    if (!this.#parseFrames) {
      this.rawBytes = Buffer.concat([this.rawBytes, d]);
      this.#wake();
      return;
    }
    this.#buf = Buffer.concat([this.#buf, d]);
    const f = new FrameHeader();
    let off = 0;
    for (;;) {
      const next = parseFrame(this.#buf, off, this.#buf.length, 0, f);
      if (next === NEED_MORE) break;
      const payload = Buffer.from(this.#buf.subarray(f.payloadStart, f.payloadEnd));
      const frame: RawFrame = { type: f.type, channel: f.channel, payload };
      if (f.type === FRAME_METHOD) frame.method = decodeMethod(payload.readUInt16BE(0), payload.readUInt16BE(2), payload, 4, payload.length);
      this.received.push(frame);
      off = next;
    }
    this.#buf = this.#buf.subarray(off);
    this.#wake();
  }

  #wake(): void {
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }

  /** Waits until `pick` finds something in what has arrived, or the socket closes, or timeout. */
  async #until<T>(pick: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pick();
      if (v !== undefined) return v;
      if (this.closed) throw new Error(`socket closed while waiting for ${what}; got ${this.describe()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  describe(): string {
    return JSON.stringify(this.received.map((f) => (f.method ? `${f.channel}:${f.method.name}` : `${f.channel}:type${f.type}`)));
  }

  /** The first not-yet-consumed method frame named `name` (any channel unless given). */
  async expectMethod(name: string, channel?: number, timeoutMs = 5000): Promise<AmqpMethod> {
    const f = await this.#until(
      () => {
        const i = this.received.findIndex((x) => x.method?.name === name && (channel === undefined || x.channel === channel));
        if (i < 0) return undefined;
        return this.received.splice(i, 1)[0];
      },
      timeoutMs,
      name,
    );
    return f.method!;
  }

  /**
   * The connection.close the broker sends, answered with close-ok; then waits for the socket
   * to close. Returns its reply code and text.
   */
  async expectConnectionClose(timeoutMs = 5000): Promise<{ replyCode: number; replyText: string; classId: number; methodId: number }> {
    const m = await this.expectMethod('connection.close', 0, timeoutMs);
    if (!this.closed) this.send(0, { name: 'connection.close-ok', args: {} });
    await this.waitClosed(timeoutMs);
    return m.args as { replyCode: number; replyText: string; classId: number; methodId: number };
  }

  async expectChannelClose(channel: number, timeoutMs = 5000): Promise<{ replyCode: number; replyText: string; classId: number; methodId: number }> {
    const m = await this.expectMethod('channel.close', channel, timeoutMs);
    this.send(channel, { name: 'channel.close-ok', args: {} });
    return m.args as { replyCode: number; replyText: string; classId: number; methodId: number };
  }

  /** Raw bytes received until at least `n` have arrived (before frame parsing is on). */
  async expectRawBytes(n: number, timeoutMs = 5000): Promise<Buffer> {
    await this.#until(() => (this.rawBytes.length >= n ? true : undefined), timeoutMs, `${n} raw bytes`).catch((e: unknown) => {
      if (this.rawBytes.length < n) throw e;
    });
    return this.rawBytes;
  }

  waitClosed(timeoutMs = 5000): Promise<void> {
    return Promise.race([
      this.#closedPromise,
      new Promise<void>((_, reject) => setTimeout(() => reject(new Error('socket did not close')), timeoutMs).unref()),
    ]);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
