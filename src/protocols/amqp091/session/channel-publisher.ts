/**
 * The publishing side of a channel, once a message is assembled (publish-assembler.ts):
 * routing (with mandatory returns), direct reply-to, publisher confirms and the publishes a
 * transaction holds until commit. The channel keeps the method switch and the mode checks.
 */
import { decodeProperties, propertiesToBuffer, readDeliveryMode, ReplyCode, type AmqpMethodArgs } from '../codec/mod.js';
import type { FlushListener } from '../../../broker/mod.js';
import type { AmqpConnection } from './connection.js';
import { channelError } from './reply-codes.js';
import { sendContent } from './send-content.js';

export const REPLY_TO = 'amq.rabbitmq.reply-to';
export const REPLY_TO_PREFIX = 'amq.rabbitmq.reply-to.';
const REPLY_TO_FLAG = 1 << 9; // property flag bit of reply-to (bit 15 - 6)

interface TxPublish {
  exchange: string;
  routingKey: string;
  mandatory: boolean;
  props: Buffer;
  body: Buffer;
}

export class ChannelPublisher implements FlushListener {
  readonly #conn: AmqpConnection;
  readonly #channel: number;
  /** The channel's direct reply-to key, if it consumes from amq.rabbitmq.reply-to. */
  readonly #replyKey: () => string | null;
  #confirm = false;
  #publishSeq = 0;
  #confirmedUpTo = 0;
  #flushPending = false;
  /** The last sequence number the pending flush covers. */
  #flushUpTo = 0;
  /** Whether the last routed publish was refused by a queue (x-overflow reject-publish). */
  #rejected = false;
  /** Sequence numbers to nack once the flush before them is done, ascending. */
  #nacked: number[] = [];
  #tx = false;
  #txPublishes: TxPublish[] = [];
  #released = false;

  constructor(conn: AmqpConnection, channel: number, replyKey: () => string | null) {
    this.#conn = conn;
    this.#channel = channel;
    this.#replyKey = replyKey;
  }

  /** confirm.select was seen. */
  get confirming(): boolean {
    return this.#confirm;
  }

  /** tx.select was seen. */
  get transactional(): boolean {
    return this.#tx;
  }

  selectConfirm(): void {
    this.#confirm = true;
  }

  selectTx(): void {
    this.#tx = true;
  }

  /** A complete basic.publish: routed now, or held until tx.commit. */
  published(exchange: string, routingKey: string, mandatory: boolean, props: Buffer, body: Buffer): void {
    if (this.#tx) {
      // The socket chunk is not reused by Node, so holding views of it until commit is safe.
      this.#txPublishes.push({ exchange, routingKey, mandatory, props, body });
      return;
    }
    this.#rejected = false;
    const needsFlush = this.#route(exchange, routingKey, mandatory, props, body);
    if (this.#confirm) this.#confirmPublish(needsFlush, this.#rejected);
  }

  /** tx.commit: routes the held publishes; returns whether the commit must wait for the storage flush. */
  commit(): boolean {
    const pubs = this.#txPublishes;
    this.#txPublishes = [];
    let needsFlush = false;
    for (const p of pubs) if (this.#route(p.exchange, p.routingKey, p.mandatory, p.props, p.body)) needsFlush = true;
    return needsFlush;
  }

  rollback(): void {
    this.#txPublishes = [];
  }

  /** The channel is gone: no more confirms go out. */
  release(): void {
    this.#released = true;
  }

  /** Routes one message; returns whether its confirm must wait for the storage flush. */
  #route(exchange: string, routingKey: string, mandatory: boolean, props: Buffer, body: Buffer): boolean {
    if (props.length >= 2 && (props.readUInt16BE(0) & REPLY_TO_FLAG) !== 0) props = this.#directReplyProps(props);
    const conn = this.#conn;
    if (exchange === '' && routingKey.startsWith(REPLY_TO_PREFIX)) {
      const target = conn.ctx.replyChannel(routingKey.slice(REPLY_TO_PREFIX.length));
      if (target !== undefined) target.deliverReply(routingKey, props, body);
      else if (mandatory) this.#sendReturn(ReplyCode.NO_ROUTE, 'NO_ROUTE', exchange, routingKey, props, body);
      return false;
    }
    const mode = readDeliveryMode(props);
    if (mode !== undefined && mode !== 1 && mode !== 2) {
      // RabbitMQ 3.10 refuses other delivery modes on the channel (checked against it).
      throw channelError(ReplyCode.PRECONDITION_FAILED, `PRECONDITION_FAILED - invalid message: {delivery_mode_unknown,${mode}}`);
    }
    conn.publishes = true;
    const r = conn.broker.publish(conn.user, conn.vhost, {
      exchange,
      routingKey,
      props,
      body,
      persistent: mode === 2,
    });
    if (r.routed === 0 && mandatory) this.#sendReturn(ReplyCode.NO_ROUTE, 'NO_ROUTE', exchange, routingKey, props, body);
    this.#rejected = r.rejected;
    return r.needsFlush;
  }

  /** A request whose reply-to is amq.rabbitmq.reply-to gets this channel's reply address instead. */
  #directReplyProps(props: Buffer): Buffer {
    const decoded = decodeProperties(props, 0, props.length);
    if (decoded.replyTo !== REPLY_TO) return props;
    const key = this.#replyKey();
    if (key === null) {
      throw channelError(ReplyCode.PRECONDITION_FAILED, 'PRECONDITION_FAILED - fast reply consumer does not exist');
    }
    decoded.replyTo = REPLY_TO_PREFIX + key;
    return propertiesToBuffer(decoded);
  }

  #sendReturn(code: number, text: string, exchange: string, routingKey: string, props: Buffer, body: Buffer): void {
    sendContent(this.#conn, this.#channel, { name: 'basic.return', args: { replyCode: code, replyText: text, exchange, routingKey } }, props, 0, props.length, 0, body.length, body);
  }

  #confirmPublish(needsFlush: boolean, rejected: boolean): void {
    const seq = ++this.#publishSeq;
    if (!needsFlush && !this.#flushPending && seq === this.#confirmedUpTo + 1) {
      this.#confirmedUpTo = seq;
      this.#send(rejected ? { name: 'basic.nack', args: { deliveryTag: seq, multiple: false, requeue: false } } : { name: 'basic.ack', args: { deliveryTag: seq, multiple: false } });
      return;
    }
    if (rejected) this.#nacked.push(seq);
    if (!this.#flushPending) this.#waitFlush();
  }

  /** One storage flush at a time per channel; its confirm covers everything published before it. */
  #waitFlush(): void {
    this.#flushPending = true;
    this.#flushUpTo = this.#publishSeq;
    this.#conn.broker.whenFlushed(this);
  }

  /** FlushListener: the storage flush asked for by #waitFlush is done (or failed). */
  flushDone(ok: boolean): void {
    this.#confirmUpTo(this.#flushUpTo, ok);
  }

  #confirmUpTo(upTo: number, ok: boolean): void {
    this.#flushPending = false;
    if (this.#released) return;
    if (ok) {
      // Publishes a queue refused (reject-publish) are nacked one by one; the rest are acked in runs.
      while (this.#nacked.length > 0 && this.#nacked[0]! <= upTo) {
        const n = this.#nacked.shift()!;
        if (n - 1 > this.#confirmedUpTo) this.#send({ name: 'basic.ack', args: { deliveryTag: n - 1, multiple: n - 1 > this.#confirmedUpTo + 1 } });
        this.#send({ name: 'basic.nack', args: { deliveryTag: n, multiple: false, requeue: false } });
        this.#confirmedUpTo = n;
      }
    } else {
      while (this.#nacked.length > 0 && this.#nacked[0]! <= upTo) this.#nacked.shift();
    }
    if (upTo > this.#confirmedUpTo) {
      const multiple = upTo > this.#confirmedUpTo + 1;
      this.#confirmedUpTo = upTo;
      this.#send(ok ? { name: 'basic.ack', args: { deliveryTag: upTo, multiple } } : { name: 'basic.nack', args: { deliveryTag: upTo, multiple, requeue: false } });
    }
    if (this.#publishSeq > this.#confirmedUpTo) this.#waitFlush();
  }

  #send(m: AmqpMethodArgs): void {
    this.#conn.send(this.#channel, m);
  }
}
