/**
 * One AMQP channel: method handlers in a flat switch (one hop from a method to its handling),
 * consumers with prefetch credit, unacked deliveries, tx and direct reply-to. Content assembly
 * for basic.publish is in publish-assembler.ts; routing, confirms and the publishes a tx holds
 * are in channel-publisher.ts.
 *
 * Methods are handled in order: while an asynchronous handler (a declare waiting for its
 * definition to be durable) runs, later frames of the channel wait in a backlog.
 */
import { randomBytes } from 'node:crypto';
import { StoredMessageView, type Consumer, type ConsumerSink, type Queue, type StoredMessage } from '../../../broker/mod.js';
import {
  Deliver,
  decodeBasicAckInto,
  decodeMethod,
  deliverSizeBound,
  newBasicAck,
  ReplyCode,
  writeDeliver,
  type AmqpMethod,
  type AmqpMethodArgs,
  type FieldTable,
} from '../codec/mod.js';
import { ChannelPublisher, REPLY_TO } from './channel-publisher.js';
import type { AmqpConnection } from './connection.js';
import { PublishAssembler } from './publish-assembler.js';
import { channelError, closeReasonOf, connectionError, replyText, type CloseReason } from './reply-codes.js';
import { sendContent } from './send-content.js';
import { UnackedDeliveries } from './unacked-deliveries.js';

interface ConsumerState {
  consumer: Consumer;
  prefetch: number;
  unacked: number;
}

export class AmqpChannel implements ConsumerSink {
  readonly id: number;
  readonly conn: AmqpConnection;
  #closing = false;
  #released = false;
  readonly #assembler = new PublishAssembler();
  readonly #publisher: ChannelPublisher;
  readonly #ack = newBasicAck();
  #consumers = new Map<string, ConsumerState>();
  #byConsumer = new Map<Consumer, ConsumerState>();
  #registering = false;
  #prefetchCount = 0;
  #globalPrefetch = 0;
  #globalPrefetchBytes = 0;
  readonly #unacked = new UnackedDeliveries();
  #deliveryTag = 0;
  #txAcks: Array<[kind: 'ack' | 'nack', tag: number, multiple: boolean, requeue: boolean]> = [];
  #lastQueue = '';
  #flowActive = true;
  #busy = false;
  #backlog: Array<[type: number, buf: Buffer, start: number, end: number]> = [];
  #replyKey: string | null = null;
  #replyConsumerTag = '';
  readonly #deliver = new Deliver();
  readonly #view = new StoredMessageView();
  #current = { classId: 0, methodId: 0 };

  constructor(conn: AmqpConnection, id: number) {
    this.conn = conn;
    this.id = id;
    this.#deliver.channel = id;
    this.#publisher = new ChannelPublisher(conn, id, () => this.#replyKey);
  }

  // ---- frames in

  onMethodFrame(buf: Buffer, start: number, end: number): void {
    if (this.#busy) return void this.#backlog.push([1, buf, start, end]);
    const classId = buf.readUInt16BE(start);
    const methodId = buf.readUInt16BE(start + 2);
    this.#current.classId = classId;
    this.#current.methodId = methodId;
    try {
      if (this.#closing) {
        // §2.2.5: after channel.close, everything but close and close-ok is discarded.
        if (classId === 20 && methodId === 41) this.#finishClose();
        else if (classId === 20 && methodId === 40) {
          this.#send({ name: 'channel.close-ok', args: {} });
        }
        return;
      }
      if (!this.#assembler.expectsMethod) {
        throw connectionError(ReplyCode.UNEXPECTED_FRAME, `UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead`);
      }
      if (classId === 60 && methodId === 40) {
        this.#assembler.method(buf, start + 4, end);
        return;
      }
      if (classId === 60 && methodId === 80) {
        decodeBasicAckInto(buf, start + 4, end, this.#ack);
        this.#onAck('ack', this.#ack.deliveryTag, this.#ack.multiple, false);
        return;
      }
      this.#onMethod(decodeMethod(classId, methodId, buf, start + 4, end));
    } catch (err) {
      this.conn.fail(err, this.id, classId, methodId);
    }
  }

  onHeaderFrame(buf: Buffer, start: number, end: number): void {
    if (this.#busy) return void this.#backlog.push([2, buf, start, end]);
    if (this.#closing) return;
    try {
      const body = this.#assembler.header(buf, start, end, this.conn.ctx.config.maxMessageSize);
      if (body !== null) this.#published(body);
    } catch (err) {
      this.conn.fail(err, this.id, 60, 40);
    }
  }

  onBodyFrame(buf: Buffer, start: number, end: number): void {
    if (this.#busy) return void this.#backlog.push([3, buf, start, end]);
    if (this.#closing) return;
    try {
      const body = this.#assembler.body(buf, start, end);
      if (body !== null) this.#published(body);
    } catch (err) {
      this.conn.fail(err, this.id, 60, 40);
    }
  }

  /** Runs an asynchronous handler; frames arriving meanwhile wait in order. */
  #run(work: Promise<void>): void {
    const { classId, methodId } = this.#current;
    this.#busy = true;
    work.then(
      () => this.#drain(),
      (err: unknown) => {
        this.#busy = false;
        this.conn.fail(err, this.id, classId, methodId);
        this.#drain();
      },
    );
  }

  #drain(): void {
    this.#busy = false;
    while (!this.#busy && this.#backlog.length > 0) {
      const [type, buf, start, end] = this.#backlog.shift()!;
      if (type === 1) this.onMethodFrame(buf, start, end);
      else if (type === 2) this.onHeaderFrame(buf, start, end);
      else this.onBodyFrame(buf, start, end);
    }
  }

  // ---- methods

  #onMethod(m: AmqpMethod): void {
    const b = this.conn.broker;
    const user = this.conn.user;
    const vhost = this.conn.vhost;
    switch (m.name) {
      case 'channel.open':
        throw connectionError(ReplyCode.CHANNEL_ERROR, `CHANNEL_ERROR - second 'channel.open' seen`);
      case 'channel.close':
        this.release();
        this.#send({ name: 'channel.close-ok', args: {} });
        this.conn.channelClosed(this.id);
        return;
      case 'channel.close-ok':
        return;
      case 'channel.flow':
        this.#flowActive = m.args.active;
        this.#send({ name: 'channel.flow-ok', args: { active: m.args.active } });
        if (m.args.active) this.resumeDelivery();
        return;
      case 'channel.flow-ok':
        return;
      case 'access.request':
        this.#send({ name: 'access.request-ok', args: { ticket: 1 } });
        return;
      case 'exchange.declare': {
        const a = m.args;
        this.#run(
          b.declareExchange(user, vhost, { name: a.exchange, type: a.type, passive: a.passive, durable: a.durable, autoDelete: a.autoDelete, internal: a.internal, args: a.arguments }).then(() => {
            if (!a.nowait) this.#send({ name: 'exchange.declare-ok', args: {} });
          }),
        );
        return;
      }
      case 'exchange.delete': {
        const a = m.args;
        this.#run(b.deleteExchange(user, vhost, a.exchange, a.ifUnused).then(() => {
          if (!a.nowait) this.#send({ name: 'exchange.delete-ok', args: {} });
        }));
        return;
      }
      case 'exchange.bind':
      case 'exchange.unbind': {
        const a = m.args;
        const def = { vhost, source: a.source, destinationType: 'exchange' as const, destination: a.destination, routingKey: a.routingKey, args: a.arguments };
        const bind = m.name === 'exchange.bind';
        this.#run((bind ? b.bind(user, def) : b.unbind(user, def)).then(() => {
          if (!a.nowait) this.#send(bind ? { name: 'exchange.bind-ok', args: {} } : { name: 'exchange.unbind-ok', args: {} });
        }));
        return;
      }
      case 'queue.declare': {
        const a = m.args;
        this.#run(
          b.declareQueue(user, vhost, { name: a.queue, passive: a.passive, durable: a.durable, exclusive: a.exclusive, autoDelete: a.autoDelete, args: a.arguments }, this.conn.id).then((r) => {
            this.#lastQueue = r.name;
            if (!a.nowait) this.#send({ name: 'queue.declare-ok', args: { queue: r.name, messageCount: r.messageCount, consumerCount: r.consumerCount } });
          }),
        );
        return;
      }
      case 'queue.bind':
      case 'queue.unbind': {
        const a = m.args;
        const def = { vhost, source: a.exchange, destinationType: 'queue' as const, destination: this.#queueName(a.queue), routingKey: a.routingKey, args: a.arguments };
        const bind = m.name === 'queue.bind';
        this.#run((bind ? b.bind(user, def) : b.unbind(user, def)).then(() => {
          if (bind && !(m.args as { nowait: boolean }).nowait) this.#send({ name: 'queue.bind-ok', args: {} });
          if (!bind) this.#send({ name: 'queue.unbind-ok', args: {} });
        }));
        return;
      }
      case 'queue.purge': {
        const n = b.purgeQueue(user, vhost, this.#queueName(m.args.queue), this.conn.id);
        if (!m.args.nowait) this.#send({ name: 'queue.purge-ok', args: { messageCount: n } });
        return;
      }
      case 'queue.delete': {
        const a = m.args;
        this.#run(b.deleteQueue(user, vhost, this.#queueName(a.queue), a.ifUnused, a.ifEmpty, this.conn.id).then((n) => {
          if (!a.nowait) this.#send({ name: 'queue.delete-ok', args: { messageCount: n } });
        }));
        return;
      }
      case 'basic.qos': {
        const a = m.args;
        if (a.global) {
          this.#globalPrefetch = a.prefetchCount;
          this.#globalPrefetchBytes = a.prefetchSize;
        } else {
          // per_consumer_qos: applies to consumers created after it (RabbitMQ's reading of global=false).
          this.#prefetchCount = a.prefetchCount;
          this.#globalPrefetchBytes = a.prefetchSize;
        }
        this.#send({ name: 'basic.qos-ok', args: {} });
        this.resumeDelivery();
        return;
      }
      case 'basic.consume':
        this.#consume(m.args);
        return;
      case 'basic.cancel': {
        const st = this.#consumers.get(m.args.consumerTag);
        if (st !== undefined) {
          this.#consumers.delete(m.args.consumerTag);
          this.#byConsumer.delete(st.consumer);
          b.cancel(st.consumer);
        } else if (m.args.consumerTag === this.#replyConsumerTag && this.#replyKey !== null) {
          this.conn.ctx.registerReplyChannel(this.#replyKey, null);
          this.#replyKey = null;
        }
        if (!m.args.nowait) this.#send({ name: 'basic.cancel-ok', args: { consumerTag: m.args.consumerTag } });
        return;
      }
      case 'basic.get': {
        const a = m.args;
        this.#run(b.get(user, vhost, this.#queueName(a.queue), this.conn.id).then((r) => {
          if (r === null) return this.#send({ name: 'basic.get-empty', args: {} });
          this.#sendGetOk(r.queue, r.msg, a.noAck);
        }));
        return;
      }
      case 'basic.reject':
        this.#onAck('nack', m.args.deliveryTag, false, m.args.requeue);
        return;
      case 'basic.nack':
        this.#onAck('nack', m.args.deliveryTag, m.args.multiple, m.args.requeue);
        return;
      case 'basic.recover-async':
      case 'basic.recover':
        this.#requeueAll();
        if (m.name === 'basic.recover') this.#send({ name: 'basic.recover-ok', args: {} });
        return;
      case 'confirm.select':
        if (this.#publisher.transactional) throw channelError(ReplyCode.PRECONDITION_FAILED, 'PRECONDITION_FAILED - cannot switch from tx to confirm mode');
        this.#publisher.selectConfirm();
        if (!m.args.nowait) this.#send({ name: 'confirm.select-ok', args: {} });
        return;
      case 'tx.select':
        if (this.#publisher.confirming) throw channelError(ReplyCode.PRECONDITION_FAILED, 'PRECONDITION_FAILED - cannot switch from confirm to tx mode');
        this.#publisher.selectTx();
        this.#send({ name: 'tx.select-ok', args: {} });
        return;
      case 'tx.commit':
        if (!this.#publisher.transactional) throw channelError(ReplyCode.PRECONDITION_FAILED, 'PRECONDITION_FAILED - channel is not transactional');
        this.#run(this.#commit());
        return;
      case 'tx.rollback':
        if (!this.#publisher.transactional) throw channelError(ReplyCode.PRECONDITION_FAILED, 'PRECONDITION_FAILED - channel is not transactional');
        this.#publisher.rollback();
        this.#txAcks = [];
        this.#send({ name: 'tx.rollback-ok', args: {} });
        return;
      default:
        if (m.classId === 10) throw connectionError(ReplyCode.COMMAND_INVALID, `COMMAND_INVALID - ${m.name} on channel ${this.id}`);
        throw connectionError(ReplyCode.COMMAND_INVALID, `COMMAND_INVALID - ${m.name} is not a method a client may send`);
    }
  }

  #queueName(name: string): string {
    if (name !== '') return name;
    if (this.#lastQueue === '') throw channelError(ReplyCode.NOT_FOUND, 'NOT_FOUND - no previously declared queue');
    return this.#lastQueue;
  }

  // ---- publish (routing and confirms: channel-publisher.ts)

  #published(body: Buffer): void {
    const a = this.#assembler;
    const p = a.publish;
    this.#publisher.published(p.exchange, p.routingKey, p.mandatory, a.props, body);
  }

  async #commit(): Promise<void> {
    const acks = this.#txAcks;
    this.#txAcks = [];
    const needsFlush = this.#publisher.commit();
    for (const [kind, tag, multiple, requeue] of acks) this.#applyAck(kind, tag, multiple, requeue);
    if (needsFlush) await this.conn.broker.flushed();
    this.#send({ name: 'tx.commit-ok', args: {} });
  }

  // ---- consume and deliver

  #consume(a: Extract<AmqpMethod, { name: 'basic.consume' }>['args']): void {
    let tag = a.consumerTag;
    if (tag === '') tag = `amq.ctag-${randomBytes(16).toString('base64url')}`;
    if (this.#consumers.has(tag) || tag === this.#replyConsumerTag) {
      throw connectionError(ReplyCode.NOT_ALLOWED, `NOT_ALLOWED - attempt to reuse consumer tag '${tag}'`);
    }
    if (a.queue === REPLY_TO) {
      if (!a.noAck) throw channelError(ReplyCode.PRECONDITION_FAILED, 'PRECONDITION_FAILED - reply consumer cannot acknowledge');
      if (this.#replyKey !== null) throw channelError(ReplyCode.PRECONDITION_FAILED, 'PRECONDITION_FAILED - reply consumer already set');
      this.#replyKey = randomBytes(12).toString('base64url');
      this.#replyConsumerTag = tag;
      this.conn.ctx.registerReplyChannel(this.#replyKey, this);
      if (!a.nowait) this.#send({ name: 'basic.consume-ok', args: { consumerTag: tag } });
      return;
    }
    const queue = this.#queueName(a.queue);
    const args = a.arguments as Record<string, unknown>;
    const prio = args['x-priority'];
    if (prio !== undefined && !(typeof prio === 'bigint' || (typeof prio === 'number' && Number.isInteger(prio)))) {
      throw channelError(ReplyCode.PRECONDITION_FAILED, `PRECONDITION_FAILED - invalid arg 'x-priority' for consumer '${tag}' on ${queue === '' ? 'queue' : `queue '${queue}'`} in vhost '${this.conn.vhost}': {unacceptable_type,${typeof prio === 'string' ? 'longstr' : typeof prio}}`);
    }
    this.#registering = true;
    let consumer: Consumer;
    try {
      consumer = this.conn.broker.consume(this.conn.user, this.conn.vhost, {
        queue,
        tag,
        noAck: a.noAck,
        exclusive: a.exclusive,
        priority: typeof prio === 'number' ? prio : typeof prio === 'bigint' ? Number(prio) : 0,
        args,
        sink: this,
        connectionId: this.conn.id,
      });
    } finally {
      this.#registering = false;
    }
    const st: ConsumerState = { consumer, prefetch: this.#prefetchCount, unacked: 0 };
    this.#consumers.set(tag, st);
    this.#byConsumer.set(consumer, st);
    // consume-ok goes out before the first delivery.
    if (!a.nowait) this.#send({ name: 'basic.consume-ok', args: { consumerTag: tag } });
    consumer.queue.dispatch();
  }

  unackedOf(consumer: Consumer): number {
    return this.#byConsumer.get(consumer)?.unacked ?? 0;
  }

  canAccept(consumer: Consumer): boolean {
    if (this.#released || this.#registering || this.#closing || !this.#flowActive || this.conn.out.backlogged) return false;
    const st = this.#byConsumer.get(consumer);
    if (st === undefined) return false;
    if (consumer.noAck) return true;
    if (st.prefetch > 0 && st.unacked >= st.prefetch) return false;
    if (this.#globalPrefetch > 0 && this.#unacked.count >= this.#globalPrefetch) return false;
    if (this.#globalPrefetchBytes > 0 && this.#unacked.bytes >= this.#globalPrefetchBytes) return false;
    return true;
  }

  deliver(consumer: Consumer, queue: Queue, msg: StoredMessage): void {
    const tag = ++this.#deliveryTag;
    const v = this.#view.parse(msg.payload);
    if (!consumer.noAck) {
      const st = this.#byConsumer.get(consumer);
      if (st !== undefined) st.unacked++;
      this.#unacked.push(tag, queue, msg.ref, consumer, msg.payload.length - v.propsEnd);
    }
    const d = this.#deliver;
    d.consumerTag = consumer.tag;
    d.deliveryTag = tag;
    d.redelivered = msg.redelivered;
    d.names = msg.payload;
    d.namesEnd = v.rkEnd;
    d.props = msg.payload;
    d.propsStart = v.propsStart;
    d.propsEnd = v.propsEnd;
    d.body = msg.payload;
    d.bodyStart = v.propsEnd;
    d.bodyEnd = msg.payload.length;
    const fm = this.conn.frameMax;
    const out = this.conn.out;
    const buf = out.reserve(deliverSizeBound(d, fm));
    out.pos = writeDeliver(buf, out.pos, d, fm);
  }

  /** Direct reply-to: a reply goes straight to this channel, no queue, no ack. */
  deliverReply(routingKey: string, props: Buffer, body: Buffer): void {
    if (this.#closing || this.#replyKey === null) return;
    const d = this.#deliver;
    d.consumerTag = this.#replyConsumerTag;
    d.deliveryTag = ++this.#deliveryTag;
    d.redelivered = false;
    d.names = null;
    d.exchange = '';
    d.routingKey = routingKey;
    d.props = props;
    d.propsStart = 0;
    d.propsEnd = props.length;
    d.body = body;
    d.bodyStart = 0;
    d.bodyEnd = body.length;
    const out = this.conn.out;
    const buf = out.reserve(deliverSizeBound(d, this.conn.frameMax));
    out.pos = writeDeliver(buf, out.pos, d, this.conn.frameMax);
  }

  cancelledByBroker(consumer: Consumer): void {
    const st = this.#byConsumer.get(consumer);
    if (st === undefined) return;
    this.#byConsumer.delete(consumer);
    this.#consumers.delete(consumer.tag);
    if (this.conn.clientCapabilities['consumer_cancel_notify'] === true && !this.#closing) {
      this.#send({ name: 'basic.cancel', args: { consumerTag: consumer.tag, nowait: true } });
    }
  }

  #sendGetOk(queue: Queue, msg: StoredMessage, noAck: boolean): void {
    const tag = ++this.#deliveryTag;
    const v = this.#view.parse(msg.payload);
    if (noAck) queue.ack(msg.ref);
    else this.#unacked.push(tag, queue, msg.ref, null, msg.payload.length - v.propsEnd);
    sendContent(
      this.conn,
      this.id,
      { name: 'basic.get-ok', args: { deliveryTag: tag, redelivered: msg.redelivered, exchange: v.exchange, routingKey: v.routingKey, messageCount: queue.messageCount } },
      msg.payload,
      v.propsStart,
      v.propsEnd,
      v.propsEnd,
      msg.payload.length,
    );
  }

  /** Called when credit may have grown (ack, qos, flow, socket drained). */
  resumeDelivery(): void {
    for (const st of this.#consumers.values()) st.consumer.queue.dispatch();
  }

  // ---- acks

  #onAck(kind: 'ack' | 'nack', tag: number, multiple: boolean, requeue: boolean): void {
    if (!(tag === 0 && multiple) && this.#unacked.indexOf(tag) < 0) {
      throw channelError(ReplyCode.PRECONDITION_FAILED, `PRECONDITION_FAILED - unknown delivery tag ${tag}`);
    }
    if (this.#publisher.transactional) {
      this.#txAcks.push([kind, tag, multiple, requeue]);
      return;
    }
    this.#applyAck(kind, tag, multiple, requeue);
  }

  #touched: Queue | null = null;
  #touchedMore = new Set<Queue>();

  #applyAck(kind: 'ack' | 'nack', tag: number, multiple: boolean, requeue: boolean): void {
    const fn = kind === 'ack' ? this.#ackOne : requeue ? this.#requeueOne : this.#dropOne;
    if (multiple) this.#unacked.takeUpTo(tag === 0 ? Infinity : tag, fn);
    else {
      const i = this.#unacked.indexOf(tag);
      if (i >= 0) this.#unacked.takeAt(i, fn);
    }
    this.#dispatchTouched();
  }

  #touch(q: Queue, c: Consumer | null): void {
    if (c !== null) {
      const st = this.#byConsumer.get(c);
      if (st !== undefined) st.unacked--;
    }
    if (this.#touched === null) this.#touched = q;
    else if (this.#touched !== q) this.#touchedMore.add(q);
  }

  readonly #ackOne = (q: Queue, ref: number, c: Consumer | null, size: number): void => {
    void size;
    q.ack(ref);
    this.#touch(q, c);
  };
  readonly #requeueOne = (q: Queue, ref: number, c: Consumer | null, size: number): void => {
    q.requeue(ref, size);
    this.#touch(q, c);
  };
  // Without requeue: retried, dead-lettered or dropped, as the queue's settings say.
  readonly #dropOne = (q: Queue, ref: number, c: Consumer | null): void => {
    q.reject(ref);
    this.#touch(q, c);
  };

  #dispatchTouched(): void {
    const q = this.#touched;
    this.#touched = null;
    if (q !== null && !q.deleted) q.dispatch();
    if (this.#touchedMore.size > 0) {
      const more = [...this.#touchedMore];
      this.#touchedMore.clear();
      for (const x of more) if (!x.deleted) x.dispatch();
    }
  }

  #requeueAll(): void {
    this.#unacked.takeUpTo(Infinity, this.#requeueOne);
    this.#dispatchTouched();
  }

  // ---- closing

  #send(m: AmqpMethodArgs): void {
    this.conn.send(this.id, m);
  }

  /** Closes this channel with an error (§1.5.2.5: channel.close, then wait for close-ok). */
  closeWithError(reason: CloseReason, classId: number, methodId: number): void {
    if (this.#closing) return;
    this.#send({ name: 'channel.close', args: { replyCode: reason.code, replyText: replyText(reason.text), classId, methodId } });
    this.#closing = true;
    this.#assembler.reset();
    this.release();
  }

  #finishClose(): void {
    this.conn.channelClosed(this.id);
  }

  /** Gives back everything the channel holds: consumers go, unacked messages are requeued. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#publisher.release();
    this.#backlog = [];
    // Unacked messages go back first, so that a queue's next consumer (single active consumer
    // above all) finds them at their places before it is offered anything.
    const consumers = [...this.#consumers.values()];
    this.#unacked.takeUpTo(Infinity, this.#requeueOne);
    this.#consumers.clear();
    this.#byConsumer.clear();
    for (const st of consumers) this.conn.broker.cancel(st.consumer);
    if (this.#replyKey !== null) this.conn.ctx.registerReplyChannel(this.#replyKey, null);
    this.#replyKey = null;
    this.#dispatchTouched();
  }
}

export { closeReasonOf };
export type { FieldTable };
