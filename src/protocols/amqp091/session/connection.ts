/**
 * One AMQP 0-9-1 connection: the handshake (§2.2.4), frame splitting, channel 0 methods,
 * heartbeats and closing. Channel methods go to AmqpChannel. Errors are closes, never crashes:
 * a known error becomes channel.close or connection.close with its reply code, anything else
 * is 541 INTERNAL_ERROR for this connection only.
 */
import type { Socket } from 'node:net';
import type { Broker, FlowListener } from '../../../broker/mod.js';
import {
  checkProtocolHeader,
  decodeMethod,
  decodeTable,
  FrameHeader,
  NEED_MORE,
  parseFrame,
  PROTOCOL_HEADER,
  ReplyCode,
  writeMethod,
  writeHeartbeat,
  FRAME_METHOD,
  FRAME_HEADER,
  FRAME_BODY,
  FRAME_HEARTBEAT,
  FRAME_MIN_SIZE,
  type AmqpMethod,
  type AmqpMethodArgs,
  type FieldTable,
} from '../codec/mod.js';
import { AmqpChannel } from './channel.js';
import { FrameOutput } from './frame-output.js';
import { channelError, closeReasonOf, connectionError, replyText, type CloseReason } from './reply-codes.js';
import type { AmqpServerContext } from './server-context.js';

const enum State {
  AwaitHeader,
  AwaitStartOk,
  AwaitTuneOk,
  AwaitOpen,
  Open,
  Closing,
  Closed,
}

export class AmqpConnection implements FlowListener {
  readonly id: number;
  readonly socket: Socket;
  readonly broker: Broker;
  readonly ctx: AmqpServerContext;
  readonly out: FrameOutput;
  user = '';
  vhost = '/';
  clientProperties: FieldTable = {};
  /** Capabilities the client announced (consumer_cancel_notify, connection.blocked, ...). */
  clientCapabilities: FieldTable = {};
  frameMax: number;
  channelMax: number;
  heartbeat: number;
  lastReceivedAt = Date.now();
  /** Has published: held back by publish flow control (Broker.flow) while it is held. */
  publishes = false;
  /** Paused by publish flow control, with the bytes read and not parsed yet. */
  #flowHeld = false;
  #deferred: Buffer | null = null;
  /** #consume stopped early for publish flow control. */
  #yielded = false;
  #state = State.AwaitHeader;
  #pending: Buffer | null = null;
  #pendingNeed = 0;
  #frame = new FrameHeader();
  #channels = new Map<number, AmqpChannel>();
  #closeTimer: NodeJS.Timeout | null = null;
  #blocked = false;

  constructor(socket: Socket, broker: Broker, ctx: AmqpServerContext) {
    this.id = broker.nextConnectionId();
    this.socket = socket;
    this.broker = broker;
    this.ctx = ctx;
    this.out = new FrameOutput(socket);
    this.frameMax = ctx.config.frameMax;
    this.channelMax = ctx.config.channelMax;
    this.heartbeat = ctx.config.heartbeat;
    this.out.onDrain = () => {
      for (const ch of this.#channels.values()) ch.resumeDelivery();
    };
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => this.#onSocketClosed());
  }

  get isOpen(): boolean {
    return this.#state === State.Open;
  }

  #onData(chunk: Buffer): void {
    this.lastReceivedAt = Date.now();
    if (this.#state === State.Closed) return;
    try {
      // A frame split over chunks is completed by copying only its own bytes, not the whole
      // next chunk (which, with frames cut at every chunk end, copied nearly every byte read).
      while (this.#pending !== null) {
        const p = this.#pending;
        const take = this.#state === State.AwaitHeader ? chunk.length : Math.min(chunk.length, Math.max(1, this.#pendingNeed - p.length));
        const buf = Buffer.concat([p, chunk.subarray(0, take)]);
        this.#pending = null;
        chunk = chunk.subarray(take);
        const used = this.#consume(buf);
        if ((this.#state as State) === State.Closed) return;
        if (this.#yielded) {
          this.#holdForFlow(Buffer.concat([buf.subarray(used), chunk]));
          return;
        }
        if (used < buf.length) this.#keep(buf.subarray(used)); // buf is ours: no copy
        if (chunk.length === 0) return;
      }
      const used = this.#consume(chunk);
      if ((this.#state as State) === State.Closed) return;
      if (this.#yielded) this.#holdForFlow(Buffer.from(chunk.subarray(used)));
      else if (used < chunk.length) this.#keep(Buffer.from(chunk.subarray(used)));
    } catch (err) {
      this.#fail(err, 0, 0, 0);
    }
  }

  /**
   * Publish flow control (Broker.flow): stops reading until the broker's timed work has run,
   * keeping the bytes not parsed yet. RabbitMQ's "flow" state; TCP pushes back on the client.
   */
  #holdForFlow(rest: Buffer): void {
    this.#yielded = false;
    this.#deferred = rest;
    if (this.#flowHeld) return;
    this.#flowHeld = true;
    this.socket.pause();
    this.broker.flow.waitForRelease(this);
  }

  flowReleased(): void {
    // Time spent held is not the peer's silence.
    this.lastReceivedAt = Date.now();
    this.#flowHeld = false;
    const rest = this.#deferred;
    this.#deferred = null;
    if (rest !== null && rest.length > 0) this.#onData(rest);
    if (this.#flowHeld || this.#state === State.Closed) return;
    this.socket.resume();
  }

  /** Keeps the start of an incomplete frame; #frame.need is its whole size (or its header's). */
  #keep(partial: Buffer): void {
    this.#pending = partial;
    this.#pendingNeed = this.#frame.need;
  }

  /** Parses as many frames as buf holds; returns the bytes used. */
  #consume(buf: Buffer): number {
    let off = 0;
    if (this.#state === State.AwaitHeader) {
      const r = checkProtocolHeader(buf, 0, buf.length);
      if (r.status === 'need-more') return 0;
      if (r.status !== 'ok') {
        // §4.2.2: answer a wrong header with the one we speak, then close.
        this.socket.end(PROTOCOL_HEADER);
        this.#state = State.Closed;
        return buf.length;
      }
      off = PROTOCOL_HEADER.length;
      this.#sendStart();
      this.#state = State.AwaitStartOk;
    }
    const f = this.#frame;
    const flow = this.broker.flow;
    let frames = 0;
    while (off < buf.length && this.#state !== State.Closed) {
      // At the first frame and every 32nd: yield to due timed work (held reads the clock).
      if ((frames++ & 31) === 0 && this.publishes && flow.held) {
        this.#yielded = true;
        break;
      }
      // Before tune-ok the limit is the spec's minimum frame size.
      const limit = this.#state < State.AwaitOpen ? Math.max(FRAME_MIN_SIZE, this.ctx.config.frameMax) : this.frameMax;
      const next = parseFrame(buf, off, buf.length, limit, f);
      if (next === NEED_MORE) break;
      this.#onFrame(buf, f);
      off = next;
    }
    return off;
  }

  #onFrame(buf: Buffer, f: FrameHeader): void {
    // A method frame too short for its class and method ids: RabbitMQ's unknown_frame, 501.
    if (f.type === FRAME_METHOD && f.payloadEnd - f.payloadStart < 4) {
      throw connectionError(ReplyCode.FRAME_ERROR, `FRAME_ERROR - method frame of ${f.payloadEnd - f.payloadStart} bytes has no class and method id`);
    }
    if (f.type === FRAME_HEARTBEAT) {
      if (f.channel !== 0) throw connectionError(ReplyCode.UNEXPECTED_FRAME, `UNEXPECTED_FRAME - heartbeat frame on channel ${f.channel}`);
      return;
    }
    if (this.#state === State.Closing) {
      // After we sent connection.close, only close and close-ok matter (§2.2.4).
      if (f.type === FRAME_METHOD && f.channel === 0) {
        const classId = buf.readUInt16BE(f.payloadStart);
        const methodId = buf.readUInt16BE(f.payloadStart + 2);
        if (classId === 10 && (methodId === 51 || methodId === 50)) {
          if (methodId === 50) this.#send(0, { name: 'connection.close-ok', args: {} });
          this.#terminate();
        }
      }
      return;
    }
    if (f.channel === 0) {
      if (f.type !== FRAME_METHOD) throw connectionError(ReplyCode.UNEXPECTED_FRAME, `UNEXPECTED_FRAME - content frame on channel 0`);
      const classId = buf.readUInt16BE(f.payloadStart);
      const methodId = buf.readUInt16BE(f.payloadStart + 2);
      const m = decodeMethod(classId, methodId, buf, f.payloadStart + 4, f.payloadEnd);
      this.#onConnectionMethod(m);
      return;
    }
    if (this.#state !== State.Open) {
      throw connectionError(ReplyCode.COMMAND_INVALID, `COMMAND_INVALID - frame on channel ${f.channel} before the connection is open`);
    }
    if (f.channel > this.channelMax) {
      // RabbitMQ 3.10 answers 530, as for any negotiated limit a client exceeds.
      throw connectionError(ReplyCode.NOT_ALLOWED, `NOT_ALLOWED - channel ${f.channel} exceeds the negotiated channel_max (${this.channelMax})`);
    }
    let ch = this.#channels.get(f.channel);
    if (ch === undefined) {
      if (f.type !== FRAME_METHOD) throw connectionError(ReplyCode.CHANNEL_ERROR, `CHANNEL_ERROR - expected 'channel.open' on channel ${f.channel}`);
      const classId = buf.readUInt16BE(f.payloadStart);
      const methodId = buf.readUInt16BE(f.payloadStart + 2);
      if (classId !== 20 || methodId !== 10) {
        throw connectionError(ReplyCode.CHANNEL_ERROR, `CHANNEL_ERROR - expected 'channel.open' on channel ${f.channel}`);
      }
      ch = new AmqpChannel(this, f.channel);
      this.#channels.set(f.channel, ch);
      this.#send(f.channel, { name: 'channel.open-ok', args: {} });
      return;
    }
    if (f.type === FRAME_METHOD) ch.onMethodFrame(buf, f.payloadStart, f.payloadEnd);
    else if (f.type === FRAME_HEADER) ch.onHeaderFrame(buf, f.payloadStart, f.payloadEnd);
    else if (f.type === FRAME_BODY) ch.onBodyFrame(buf, f.payloadStart, f.payloadEnd);
  }

  #sendStart(): void {
    this.#send(0, {
      name: 'connection.start',
      args: {
        versionMajor: 0,
        versionMinor: 9,
        serverProperties: {
          product: 'Sluice',
          version: this.ctx.config.version,
          platform: `Node.js ${process.version}`,
          copyright: 'Sluice contributors',
          information: 'Licensed under the MIT license',
          cluster_name: this.ctx.config.clusterName,
          capabilities: {
            publisher_confirms: true,
            exchange_exchange_bindings: true,
            'basic.nack': true,
            consumer_cancel_notify: true,
            'connection.blocked': true,
            consumer_priorities: true,
            authentication_failure_close: true,
            per_consumer_qos: true,
            direct_reply_to: true,
          },
        },
        mechanisms: 'PLAIN AMQPLAIN',
        locales: 'en_US',
      },
    });
  }

  #onConnectionMethod(m: AmqpMethod): void {
    switch (m.name) {
      case 'connection.start-ok': {
        if (this.#state !== State.AwaitStartOk) throw this.#unexpected(m);
        this.clientProperties = m.args.clientProperties;
        const caps = m.args.clientProperties['capabilities'];
        if (caps !== null && typeof caps === 'object' && !Array.isArray(caps) && !Buffer.isBuffer(caps)) this.clientCapabilities = caps as FieldTable;
        const { user, pass } = this.#credentials(m.args.mechanism, m.args.response as Buffer);
        try {
          this.broker.authenticate(user, pass, isLoopback(this.socket.remoteAddress));
        } catch (e) {
          // authentication_failure_close: say why before closing (RabbitMQ sends 403 too).
          this.#closeConnection({ code: ReplyCode.ACCESS_REFUSED, text: (e as Error).message, scope: 'connection' }, 0, 0);
          return;
        }
        this.user = user;
        this.#send(0, {
          name: 'connection.tune',
          args: { channelMax: this.ctx.config.channelMax, frameMax: this.ctx.config.frameMax, heartbeat: this.ctx.config.heartbeat },
        });
        this.#state = State.AwaitTuneOk;
        return;
      }
      case 'connection.secure-ok':
        throw this.#unexpected(m);
      case 'connection.tune-ok': {
        if (this.#state !== State.AwaitTuneOk) throw this.#unexpected(m);
        const { channelMax, frameMax, heartbeat } = m.args;
        const serverMax = this.ctx.config.frameMax;
        if (frameMax !== 0 && frameMax < FRAME_MIN_SIZE) {
          throw connectionError(ReplyCode.NOT_ALLOWED, `NOT_ALLOWED - frame_max=${frameMax} < ${FRAME_MIN_SIZE} min size`);
        }
        if (frameMax === 0 ? serverMax !== 0 : frameMax > serverMax && serverMax !== 0) {
          throw connectionError(ReplyCode.NOT_ALLOWED, `NOT_ALLOWED - frame_max=${frameMax} > ${serverMax} max size`);
        }
        // RabbitMQ's rule for every negotiated limit: 0 (no limit) or more than the server's
        // maximum is refused, not clamped.
        const serverChannelMax = this.ctx.config.channelMax;
        if (serverChannelMax !== 0 && (channelMax === 0 || channelMax > serverChannelMax)) {
          throw connectionError(ReplyCode.NOT_ALLOWED, `NOT_ALLOWED - negotiated channel_max = ${channelMax} is higher than the maximum allowed value (${serverChannelMax})`);
        }
        this.frameMax = frameMax === 0 ? serverMax : frameMax;
        this.channelMax = channelMax === 0 ? serverChannelMax : channelMax;
        this.heartbeat = heartbeat;
        this.#state = State.AwaitOpen;
        return;
      }
      case 'connection.open': {
        if (this.#state !== State.AwaitOpen) throw this.#unexpected(m);
        this.broker.openVhost(this.user, m.args.virtualHost);
        this.vhost = m.args.virtualHost;
        this.#state = State.Open;
        this.ctx.connectionOpened(this);
        this.#send(0, { name: 'connection.open-ok', args: {} });
        if (this.ctx.blocked !== null) this.setBlocked(this.ctx.blocked);
        return;
      }
      case 'connection.close':
        this.#send(0, { name: 'connection.close-ok', args: {} });
        this.#terminate();
        return;
      case 'connection.close-ok':
        this.#terminate();
        return;
      case 'connection.update-secret':
        // No token-based auth backend: the new secret is accepted as is, as RabbitMQ does for internal users.
        this.#send(0, { name: 'connection.update-secret-ok', args: {} });
        return;
      case 'connection.blocked':
      case 'connection.unblocked':
        return;
      default:
        if (m.classId !== 10 && this.#state === State.Open) {
          // RabbitMQ 3.10: a channel-class method on channel 0 is a 504, naming the method.
          const e = connectionError(ReplyCode.CHANNEL_ERROR, 'CHANNEL_ERROR - unexpected method in connection state running');
          throw Object.assign(e, { classId: m.classId, methodId: m.methodId });
        }
        if (m.classId !== 10) throw connectionError(ReplyCode.COMMAND_INVALID, `COMMAND_INVALID - ${m.name} on channel 0`);
        throw this.#unexpected(m);
    }
  }

  #unexpected(m: { name: string; classId: number; methodId: number }): Error {
    return connectionError(ReplyCode.COMMAND_INVALID, `COMMAND_INVALID - unexpected ${m.name} in this connection state`);
  }

  #credentials(mechanism: string, response: Buffer): { user: string; pass: string } {
    if (mechanism === 'PLAIN') {
      // authzid NUL authcid NUL password (RFC 4616)
      const parts = response.toString('utf8').split('\u0000');
      if (parts.length !== 3) throw connectionError(ReplyCode.ACCESS_REFUSED, 'ACCESS_REFUSED - malformed PLAIN response');
      // RabbitMQ has no proxy authorization: an authzid other than the user itself is refused.
      if (parts[0] !== '' && parts[0] !== parts[1]) {
        throw connectionError(ReplyCode.ACCESS_REFUSED, `ACCESS_REFUSED - authorization identity '${parts[0]}' differs from user '${parts[1]}'`);
      }
      return { user: parts[1]!, pass: parts[2]! };
    }
    if (mechanism === 'AMQPLAIN') {
      // A field table without its length prefix: LOGIN and PASSWORD.
      const t = decodeTable(response, 0, response.length);
      return { user: String(t['LOGIN'] ?? ''), pass: String(t['PASSWORD'] ?? '') };
    }
    throw connectionError(ReplyCode.ACCESS_REFUSED, `ACCESS_REFUSED - unsupported authentication mechanism '${mechanism}'`);
  }

  /** Encodes one method frame into the output slab. */
  #send(channel: number, m: AmqpMethodArgs): void {
    const size = 512 + estimate(m);
    const buf = this.out.reserve(size);
    this.out.pos = writeMethod(buf, this.out.pos, channel, m);
  }

  send(channel: number, m: AmqpMethodArgs): void {
    this.#send(channel, m);
  }

  channelClosed(channel: number): void {
    this.#channels.delete(channel);
  }

  /** Handles an error raised while processing a frame on `channel`. */
  #fail(err: unknown, channel: number, classId: number, methodId: number): void {
    try {
      this.#failOrThrow(err, channel, classId, methodId);
    } catch (e) {
      // Closing itself failed: drop this connection rather than let it reach the process.
      this.ctx.log.error({ err: e, cause: err, connection: this.id }, 'could not close an AMQP connection cleanly');
      this.#terminate();
    }
  }

  #failOrThrow(err: unknown, channel: number, classId: number, methodId: number): void {
    const reason = closeReasonOf(err);
    if (reason.code === ReplyCode.INTERNAL_ERROR && !(err instanceof Error && err.name === 'AmqpError')) {
      this.ctx.log.error({ err, connection: this.id }, 'internal error on an AMQP connection');
    }
    if (reason.scope === 'channel' && channel > 0) {
      this.#channels.get(channel)?.closeWithError(reason, classId, methodId);
      return;
    }
    const e = err as { classId?: number; methodId?: number };
    this.#closeConnection(reason, e.classId ?? classId, e.methodId ?? methodId);
  }

  /** Called by channels for errors in async handlers. */
  fail(err: unknown, channel: number, classId: number, methodId: number): void {
    if (this.#state === State.Closed || this.#state === State.Closing) return;
    this.#fail(err, channel, classId, methodId);
  }

  #closeConnection(reason: CloseReason, classId: number, methodId: number): void {
    if (this.#state === State.Closing || this.#state === State.Closed) return;
    this.#send(0, { name: 'connection.close', args: { replyCode: reason.code, replyText: replyText(reason.text), classId, methodId } });
    this.out.flush();
    this.#state = State.Closing;
    this.#releaseChannels();
    // A client that never answers with close-ok loses its socket anyway.
    this.#closeTimer = setTimeout(() => this.#terminate(), 1000);
    this.#closeTimer.unref();
  }

  /** Server-initiated close (shutdown: 320 CONNECTION_FORCED). */
  forceClose(code: number, text: string): void {
    if (this.#state === State.Open || this.#state === State.AwaitOpen || this.#state === State.AwaitTuneOk) {
      this.#closeConnection({ code, text, scope: 'connection' }, 0, 0);
    } else this.#terminate();
  }

  setBlocked(reason: string | null): void {
    if (!this.isOpen || this.clientCapabilities['connection.blocked'] !== true) return;
    if (reason !== null && !this.#blocked) this.#send(0, { name: 'connection.blocked', args: { reason } });
    else if (reason === null && this.#blocked) this.#send(0, { name: 'connection.unblocked', args: {} });
    this.#blocked = reason !== null;
  }

  /** Heartbeat duty, called about once a second by the server. */
  tick(now: number): void {
    if (this.heartbeat <= 0 || this.#state !== State.Open) return;
    const hbMs = this.heartbeat * 1000;
    if (now - this.lastReceivedAt > 2 * hbMs && !this.#flowHeld) {
      // Missed heartbeats: the peer is gone. RabbitMQ closes the socket without a close frame.
      this.ctx.log.warn({ connection: this.id }, 'missed heartbeats from client, closing the connection');
      this.#terminate();
      return;
    }
    if (now - this.out.lastWriteAt >= hbMs / 2) {
      const buf = this.out.reserve(8);
      this.out.pos = writeHeartbeat(buf, this.out.pos);
      this.out.flush();
    }
  }

  #releaseChannels(): void {
    for (const ch of this.#channels.values()) ch.release();
    this.#channels.clear();
  }

  #terminate(): void {
    if (this.#state === State.Closed) return;
    this.#state = State.Closed;
    if (this.#closeTimer) clearTimeout(this.#closeTimer);
    this.out.close();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 500).unref();
    this.#cleanup();
  }

  #onSocketClosed(): void {
    this.#state = State.Closed;
    if (this.#closeTimer) clearTimeout(this.#closeTimer);
    this.#cleanup();
  }

  #cleanedUp = false;
  #cleanup(): void {
    if (this.#cleanedUp) return;
    this.#cleanedUp = true;
    this.#releaseChannels();
    this.ctx.connectionClosed(this);
    void this.broker.connectionClosed(this.id).catch((err: unknown) => this.ctx.log.error({ err }, 'cleanup of a closed connection failed'));
  }
}

function estimate(m: AmqpMethodArgs): number {
  // Tables and long strings are the only large arguments; size them generously.
  return m.name === 'connection.start' ? 4096 : m.name === 'basic.return' ? 1024 : 2048;
}

export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

export { channelError };
