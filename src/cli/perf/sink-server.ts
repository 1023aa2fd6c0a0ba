/*
 * `sluice perf --sink-server`: the cheapest AMQP 0-9-1 peer that a perf run accepts, so the
 * perf tool's own ceiling can be measured without a broker (run the sink and the tool as two
 * processes).
 *
 *   handshake     protocol header → start → start-ok → tune → tune-ok → open → open-ok
 *   setup         declares, binds, deletes, qos, confirm.select answered with their -ok;
 *                 nothing is stored and every queue is empty (basic.get → get-empty)
 *   basic.publish counted and dropped with its content frames; in confirm mode one
 *                 basic.ack(multiple) per socket chunk covers every publish in it
 *   basic.consume deliveries of --size bytes (send time in the first 8 body bytes), as fast
 *                 as the socket drains, within the prefetch for a manual-ack consumer
 *
 * no-wait flags and transactions are not supported (the perf tool uses neither).
 */
import { createServer, type Server, type Socket } from 'node:net';
import {
  ArgWriter,
  FRAME_END,
  FRAME_HEARTBEAT,
  FRAME_METHOD,
  M,
  PROP_DELIVERY_MODE,
  contentTemplate,
  methodFrame,
  methodName,
  nowMs,
  readShortStr,
  readU64,
  writeFrameHeader,
  writeU64,
} from './amqp-wire.js';
import { FrameReader, type FrameSink } from './frame-reader.js';

const FRAME_MAX = 131072;
const BATCH_BYTES = 128 * 1024;
const ACK_FRAME_SIZE = 21;

export interface SinkOptions {
  host: string;
  port: number;
  /** Body size of generated deliveries. */
  size: number;
}

class SinkChannel {
  confirm = false;
  published = 0;
  ackSent = 0;
  prefetch = 0;
  /** Consumer state: deliveries are generated while this is set. */
  consuming = false;
  noAck = false;
  template: Buffer | null = null;
  tagAt = 0;
  stampAt = -1;
  delivered = 0;
  acked = 0;
  constructor(readonly id: number) {}
}

class SinkConnection implements FrameSink {
  #socket: Socket;
  #reader: FrameReader;
  #opts: SinkOptions;
  #header: Buffer | null = Buffer.alloc(0);
  #channels: (SinkChannel | undefined)[] = [];
  #confirming: SinkChannel[] = [];
  #consumers: SinkChannel[] = [];
  #pumping = false;
  #waitingDrain = false;
  #tagSeq = 0;
  readonly #pumpFn = (): void => this.#pump();

  constructor(socket: Socket, opts: SinkOptions) {
    this.#socket = socket;
    this.#opts = opts;
    this.#reader = new FrameReader(this, FRAME_MAX);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#onData(chunk);
      } catch (e) {
        process.stderr.write(`sluice perf sink: ${(e as Error).message}; closing the connection\n`);
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
    socket.on('drain', () => {
      if (this.#waitingDrain) {
        this.#waitingDrain = false;
        this.#schedule();
      }
    });
  }

  #onData(chunk: Buffer): void {
    if (this.#header !== null) {
      const h = Buffer.concat([this.#header, chunk]);
      if (h.length < 8) {
        this.#header = h;
        return;
      }
      this.#header = null;
      this.#sendStart();
      chunk = h.subarray(8);
      if (chunk.length === 0) return;
    }
    this.#reader.push(chunk);
    this.#afterChunk();
  }

  #sendStart(): void {
    const props = {
      product: 'sluice perf sink',
      version: '0',
      capabilities: { publisher_confirms: true, 'basic.nack': true, 'connection.blocked': true, consumer_cancel_notify: true, per_consumer_qos: true },
    };
    this.#socket.write(methodFrame(0, M.ConnectionStart, new ArgWriter().u8(0).u8(9).table(props).longstr('PLAIN AMQPLAIN').longstr('en_US').done()));
  }

  #afterChunk(): void {
    if (this.#confirming.length === 0) return;
    let out: Buffer | null = null;
    let p = 0;
    for (const ch of this.#confirming) {
      if (ch.published === ch.ackSent) continue;
      out ??= Buffer.allocUnsafe(ACK_FRAME_SIZE * this.#confirming.length);
      writeFrameHeader(out, p, FRAME_METHOD, ch.id, 13);
      out.writeUInt32BE(M.BasicAck, p + 7);
      writeU64(out, p + 11, ch.published);
      out[p + 19] = 1;
      out[p + 20] = FRAME_END;
      p += ACK_FRAME_SIZE;
      ch.ackSent = ch.published;
    }
    if (out !== null) this.#socket.write(out.subarray(0, p));
  }

  onFrame(type: number, channel: number, buf: Buffer, start: number, end: number): void {
    if (type !== FRAME_METHOD) {
      if (type === FRAME_HEARTBEAT) this.#socket.write(Buffer.from([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]));
      return; // content header and body frames of a publish: dropped
    }
    const key = buf.readUInt32BE(start);
    const a = start + 4;
    if (key === M.BasicPublish) {
      const ch = this.#channels[channel];
      if (ch !== undefined) ch.published++;
      return;
    }
    if (key === M.BasicAck || key === M.BasicNack || key === M.BasicReject) {
      const ch = this.#channels[channel];
      if (ch === undefined) return;
      const tag = readU64(buf, a);
      const multiple = key !== M.BasicReject && (buf[a + 8]! & 1) === 1;
      ch.acked = multiple ? Math.max(ch.acked, tag) : ch.acked + 1;
      if (ch.consuming) this.#schedule();
      return;
    }
    this.#setup(key, channel, buf, a);
  }

  #reply(channel: number, key: number, args?: Buffer): void {
    this.#socket.write(methodFrame(channel, key, args));
  }

  #setup(key: number, channel: number, buf: Buffer, a: number): void {
    const ch = this.#channels[channel];
    switch (key) {
      case M.ConnectionStartOk:
        this.#reply(0, M.ConnectionTune, new ArgWriter().u16(2047).u32(FRAME_MAX).u16(0).done());
        return;
      case M.ConnectionTuneOk:
      case M.ConnectionCloseOk:
      case M.ChannelCloseOk:
        return;
      case M.ConnectionOpen:
        this.#reply(0, M.ConnectionOpenOk, new ArgWriter().shortstr('').done());
        return;
      case M.ConnectionClose:
        this.#reply(0, M.ConnectionCloseOk);
        this.#stopAll();
        this.#socket.end();
        return;
      case M.ChannelOpen:
        this.#channels[channel] = new SinkChannel(channel);
        this.#reply(channel, M.ChannelOpenOk, new ArgWriter().longstr('').done());
        return;
    }
    if (ch === undefined) throw new Error(`${methodName(key)} on channel ${channel}, which is not open`);
    switch (key) {
      case M.ChannelClose:
        this.#stopChannel(ch);
        this.#channels[channel] = undefined;
        this.#reply(channel, M.ChannelCloseOk);
        return;
      case M.ExchangeDeclare:
        this.#reply(channel, M.ExchangeDeclareOk);
        return;
      case M.ExchangeDelete:
        this.#reply(channel, M.ExchangeDeleteOk);
        return;
      case M.QueueDeclare: {
        let [name] = readShortStr(buf, a + 2);
        if (name === '') name = `amq.gen-sink-${++this.#tagSeq}`;
        this.#reply(channel, M.QueueDeclareOk, new ArgWriter().shortstr(name).u32(0).u32(0).done());
        return;
      }
      case M.QueueBind:
        this.#reply(channel, M.QueueBindOk);
        return;
      case 0x00320032: // queue.unbind
        this.#reply(channel, 0x00320033);
        return;
      case M.QueuePurge:
        this.#reply(channel, M.QueuePurgeOk, new ArgWriter().u32(0).done());
        return;
      case M.QueueDelete:
        this.#reply(channel, M.QueueDeleteOk, new ArgWriter().u32(0).done());
        return;
      case M.BasicQos:
        ch.prefetch = buf.readUInt16BE(a + 4);
        this.#reply(channel, M.BasicQosOk);
        return;
      case M.ConfirmSelect:
        ch.confirm = true;
        this.#confirming.push(ch);
        this.#reply(channel, M.ConfirmSelectOk);
        return;
      case M.BasicGet:
        this.#reply(channel, M.BasicGetEmpty, new ArgWriter().shortstr('').done());
        return;
      case M.BasicConsume: {
        const [queue, p] = readShortStr(buf, a + 2);
        let [tag, p2] = readShortStr(buf, p);
        if (tag === '') tag = `sink-ctag-${++this.#tagSeq}`;
        ch.noAck = (buf[p2]! & 2) !== 0;
        this.#startConsumer(ch, tag, queue);
        this.#reply(channel, M.BasicConsumeOk, new ArgWriter().shortstr(tag).done());
        this.#schedule();
        return;
      }
      case M.BasicCancel: {
        const [tag] = readShortStr(buf, a);
        this.#stopChannel(ch);
        this.#reply(channel, M.BasicCancelOk, new ArgWriter().shortstr(tag).done());
        return;
      }
      default:
        this.#reply(0, M.ConnectionClose, new ArgWriter().u16(540).shortstr(`NOT_IMPLEMENTED - the sink does not do ${methodName(key)}`).u16(key >>> 16).u16(key & 0xffff).done());
    }
  }

  #startConsumer(ch: SinkChannel, tag: string, queue: string): void {
    // consumer-tag, delivery-tag (patched per message), redelivered, exchange, routing-key
    const args = new ArgWriter().shortstr(tag).u64(0).bit(false).shortstr('').shortstr(queue).done();
    const t = contentTemplate(ch.id, M.BasicDeliver, args, this.#opts.size, FRAME_MAX, PROP_DELIVERY_MODE, Buffer.from([1]), 0x78);
    ch.template = t.bytes;
    ch.tagAt = 7 + 4 + 1 + Buffer.byteLength(tag);
    ch.stampAt = this.#opts.size >= 8 ? t.bodyOffset : -1;
    ch.consuming = true;
    this.#consumers.push(ch);
  }

  #stopChannel(ch: SinkChannel): void {
    ch.consuming = false;
    this.#consumers = this.#consumers.filter((c) => c !== ch);
    this.#confirming = this.#confirming.filter((c) => c !== ch);
  }

  #stopAll(): void {
    for (const ch of this.#consumers) ch.consuming = false;
    this.#consumers = [];
    this.#confirming = [];
  }

  #schedule(): void {
    if (this.#pumping || this.#waitingDrain || this.#consumers.length === 0) return;
    this.#pumping = true;
    setImmediate(this.#pumpFn);
  }

  #pump(): void {
    this.#pumping = false;
    if (this.#socket.destroyed) return;
    let wrote = false;
    for (const ch of this.#consumers) {
      const t = ch.template!;
      let n = Math.max(1, Math.floor(BATCH_BYTES / t.length));
      if (!ch.noAck && ch.prefetch > 0) n = Math.min(n, ch.prefetch - (ch.delivered - ch.acked));
      if (n <= 0) continue;
      const len = t.length;
      const buf = Buffer.allocUnsafe(n * len);
      const now = nowMs();
      for (let i = 0, off = 0; i < n; i++, off += len) {
        buf.set(t, off);
        writeU64(buf, off + ch.tagAt, ++ch.delivered);
        if (ch.stampAt >= 0) buf.writeDoubleLE(now, off + ch.stampAt);
      }
      wrote = true;
      if (!this.#socket.write(buf)) this.#waitingDrain = true;
    }
    if (wrote && !this.#waitingDrain) this.#schedule();
  }
}

export class SinkServer {
  #server: Server;
  #opts: SinkOptions;

  constructor(opts: SinkOptions) {
    this.#opts = opts;
    this.#server = createServer((socket) => new SinkConnection(socket, this.#opts));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#opts.port, this.#opts.host, () => {
        const addr = this.#server.address();
        resolve(typeof addr === 'object' && addr !== null ? addr.port : this.#opts.port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
