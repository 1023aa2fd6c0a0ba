/**
 * The one error the codec throws for bad input. It carries the AMQP reply code the session
 * should close with, so the read loop can turn it into connection.close without a lookup.
 * Encoding mistakes (a value out of range, a buffer too small) are programmer errors and
 * stay RangeError/TypeError.
 *
 * What RabbitMQ does, and so what these map to (rabbit_reader.erl, rabbit_command_assembler.erl,
 * rabbit_misc:frame_error/2):
 *   - payload larger than frame_max, a missing 0xCE end octet, an unknown frame type, a
 *     heartbeat with a payload: 501 FRAME_ERROR, connection.
 *   - method arguments that do not decode (short, long, or trailing bytes): 501 FRAME_ERROR
 *     ("cannot decode"), naming the method.
 *   - unknown class/method ids: RabbitMQ's reader crashes and drops the socket without a
 *     close; LavinMQ (amq-protocol.cr Error::NotImplemented) closes with 540 NOT_IMPLEMENTED,
 *     which is the answer a client can act on, so Sluice does the same.
 */
import { ReplyCode } from './generated/constants.generated.js';

export type ErrorScope = 'connection' | 'channel';

export class AmqpCodecError extends Error {
  readonly replyCode: number;
  readonly scope: ErrorScope;
  /** The method being decoded, or 0 when the error is below the method layer. */
  classId: number;
  methodId: number;
  constructor(replyCode: number, message: string, classId = 0, methodId = 0, scope: ErrorScope = 'connection') {
    super(message);
    this.name = 'AmqpCodecError';
    this.replyCode = replyCode;
    this.scope = scope;
    this.classId = classId;
    this.methodId = methodId;
  }
}

export function frameError(message: string, classId = 0, methodId = 0): AmqpCodecError {
  return new AmqpCodecError(ReplyCode.FRAME_ERROR, message, classId, methodId);
}

/** Method arguments that do not match the method's grammar. */
export function malformed(classId: number, methodId: number): AmqpCodecError {
  return new AmqpCodecError(ReplyCode.FRAME_ERROR, `cannot decode arguments of method ${classId}/${methodId}`, classId, methodId);
}

export function notImplemented(classId: number, methodId: number): AmqpCodecError {
  return new AmqpCodecError(ReplyCode.NOT_IMPLEMENTED, `unknown method ${classId}/${methodId}`, classId, methodId);
}
