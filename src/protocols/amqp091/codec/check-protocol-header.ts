/*
 * Protocol header (AMQP 0-9-1 §4.2.2), the first 8 bytes a client sends:
 *
 *   'A' 'M' 'Q' 'P' 0 0 9 1
 *
 * If the server does not accept it, it writes the header it does support and closes the
 * socket. RabbitMQ (rabbit_reader version_negotiation) also accepts 'AMQP' 1 1 0 9, the
 * 0-9 header, and serves it as 0-9-1; so does this.
 */

/** The header Sluice speaks, also the answer to a wrong one. */
export const PROTOCOL_HEADER: Buffer = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);
export const PROTOCOL_HEADER_SIZE = 8;

export type ProtocolHeaderCheck =
  | { readonly status: 'ok' }
  | { readonly status: 'need-more' }
  /** Write `reply` (the supported header) and close the connection. */
  | { readonly status: 'wrong'; readonly reply: Buffer };

const OK: ProtocolHeaderCheck = Object.freeze({ status: 'ok' });
const NEED_MORE_HEADER: ProtocolHeaderCheck = Object.freeze({ status: 'need-more' });
const WRONG: ProtocolHeaderCheck = Object.freeze({ status: 'wrong', reply: PROTOCOL_HEADER });

/**
 * Checks buf[off, end) against the protocol header. Answers 'wrong' as soon as one byte of
 * "AMQP" differs, so a stray HTTP or TLS client is refused without waiting for 8 bytes. On 'ok'
 * the frames start at off + PROTOCOL_HEADER_SIZE.
 */
export function checkProtocolHeader(buf: Buffer, off = 0, end = buf.length): ProtocolHeaderCheck {
  const n = Math.min(end - off, 4);
  for (let i = 0; i < n; i++) if (buf[off + i] !== PROTOCOL_HEADER[i]) return WRONG;
  if (end - off < PROTOCOL_HEADER_SIZE) return NEED_MORE_HEADER;
  const a = buf[off + 4];
  const b = buf[off + 5];
  const c = buf[off + 6];
  const d = buf[off + 7];
  if (a === 0 && b === 0 && c === 9 && d === 1) return OK;
  if (a === 1 && b === 1 && c === 0 && d === 9) return OK;
  return WRONG;
}
