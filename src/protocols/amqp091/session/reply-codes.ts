/**
 * BrokerError kinds to AMQP reply codes (AMQP 0-9-1 constants; RabbitMQ's use of them).
 * Channel-scoped kinds close the channel; the rest close the connection.
 */
import { BrokerError } from '../../../broker/mod.js';
import { AmqpCodecError, ReplyCode } from '../codec/mod.js';

export interface CloseReason {
  code: number;
  text: string;
  scope: 'channel' | 'connection';
}

const KIND_CODES: Record<BrokerError['kind'], number> = {
  'not-found': ReplyCode.NOT_FOUND,
  'precondition-failed': ReplyCode.PRECONDITION_FAILED,
  'access-refused': ReplyCode.ACCESS_REFUSED,
  'resource-locked': ReplyCode.RESOURCE_LOCKED,
  'not-allowed': ReplyCode.NOT_ALLOWED,
  'command-invalid': ReplyCode.COMMAND_INVALID,
  'not-implemented': ReplyCode.NOT_IMPLEMENTED,
  'resource-error': ReplyCode.RESOURCE_ERROR,
  internal: ReplyCode.INTERNAL_ERROR,
};

/** A protocol-level failure raised by the session itself. */
export class AmqpError extends Error {
  readonly code: number;
  readonly scope: 'channel' | 'connection';
  constructor(code: number, text: string, scope: 'channel' | 'connection') {
    super(text);
    this.code = code;
    this.scope = scope;
  }
}

export const connectionError = (code: number, text: string): AmqpError => new AmqpError(code, text, 'connection');
export const channelError = (code: number, text: string): AmqpError => new AmqpError(code, text, 'channel');

/** Maps any error to how the session must close; unknown errors are 541 INTERNAL_ERROR. */
export function closeReasonOf(err: unknown): CloseReason {
  if (err instanceof AmqpError) return { code: err.code, text: err.message, scope: err.scope };
  if (err instanceof BrokerError) {
    const code = KIND_CODES[err.kind];
    const hard = err.scope === 'connection' || code >= 500;
    return { code, text: err.message, scope: hard ? 'connection' : 'channel' };
  }
  if (err instanceof AmqpCodecError) {
    const text = /^[A-Z_]+ - /.test(err.message) ? err.message : `${codeName(err.replyCode)} - ${err.message}`;
    return { code: err.replyCode, text, scope: err.scope };
  }
  return { code: ReplyCode.INTERNAL_ERROR, text: 'INTERNAL_ERROR', scope: 'connection' };
}

/**
 * A reply text that fits its shortstr: at most 255 bytes of UTF-8, cut on a character boundary.
 * Texts quote client-chosen names, so 255 characters can be far more than 255 bytes.
 */
export function replyText(text: string): string {
  if (Buffer.byteLength(text, 'utf8') <= 255) return text;
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > 255) break;
    out += ch;
    bytes += n;
  }
  return out;
}

export function codeName(code: number): string {
  for (const [k, v] of Object.entries(ReplyCode)) if (v === code) return k;
  return 'ERROR';
}
