/**
 * What the broker keeps in its schedules, as entry payloads:
 *
 *   route   u8 1 | u8 message flags | u16 vhost length | vhost | stored message
 *           a delayed message: routed through its exchange (named in the stored message) when due
 *   enqueue u8 2 | u8 message flags | u16 vhost length | vhost | u16 queue length | queue | stored message
 *           a retry: back into the queue when due
 *   expire  u8 3 | u16 queue id length | queue id | f64 ref
 *           a message's own expiration: removed from the queue (incarnation `queue id`) when due
 *
 * Groups (for counts and browsing): "x:<vhost>\0<exchange>", "r:<vhost>\0<queue>", "e".
 */

export const WorkKind = { ROUTE: 1, ENQUEUE: 2, EXPIRE: 3 } as const;

export type ScheduledWork =
  | { kind: 1; flags: number; vhost: string; message: Buffer }
  | { kind: 2; flags: number; vhost: string; queue: string; message: Buffer }
  | { kind: 3; queueId: string; ref: number };

export const delayGroup = (vhost: string, exchange: string): string => `x:${vhost}\u0000${exchange}`;
export const retryGroup = (vhost: string, queue: string): string => `r:${vhost}\u0000${queue}`;
export const EXPIRY_GROUP = 'e';

export function encodeRoute(flags: number, vhost: string, message: Buffer): Buffer {
  const v = Buffer.from(vhost, 'utf8');
  const out = Buffer.allocUnsafe(4 + v.length + message.length);
  out[0] = WorkKind.ROUTE;
  out[1] = flags;
  out.writeUInt16BE(v.length, 2);
  v.copy(out, 4);
  message.copy(out, 4 + v.length);
  return out;
}

export function encodeEnqueue(flags: number, vhost: string, queue: string, message: Buffer): Buffer {
  const v = Buffer.from(vhost, 'utf8');
  const q = Buffer.from(queue, 'utf8');
  const out = Buffer.allocUnsafe(6 + v.length + q.length + message.length);
  out[0] = WorkKind.ENQUEUE;
  out[1] = flags;
  let p = out.writeUInt16BE(v.length, 2);
  p += v.copy(out, p);
  p = out.writeUInt16BE(q.length, p);
  p += q.copy(out, p);
  message.copy(out, p);
  return out;
}

export function encodeExpire(queueId: string, ref: number): Buffer {
  const q = Buffer.from(queueId, 'utf8');
  const out = Buffer.allocUnsafe(11 + q.length);
  out[0] = WorkKind.EXPIRE;
  let p = out.writeUInt16BE(q.length, 1);
  p += q.copy(out, p);
  out.writeDoubleBE(ref, p);
  return out;
}

export function decodeWork(b: Buffer): ScheduledWork | null {
  if (b.length < 3) return null;
  switch (b[0]) {
    case WorkKind.ROUTE: {
      const vl = b.readUInt16BE(2);
      return { kind: 1, flags: b[1]!, vhost: b.toString('utf8', 4, 4 + vl), message: b.subarray(4 + vl) };
    }
    case WorkKind.ENQUEUE: {
      const vl = b.readUInt16BE(2);
      let p = 4 + vl;
      const ql = b.readUInt16BE(p);
      p += 2;
      return { kind: 2, flags: b[1]!, vhost: b.toString('utf8', 4, 4 + vl), queue: b.toString('utf8', p, p + ql), message: b.subarray(p + ql) };
    }
    case WorkKind.EXPIRE: {
      const ql = b.readUInt16BE(1);
      return { kind: 3, queueId: b.toString('utf8', 3, 3 + ql), ref: b.readDoubleBE(3 + ql) };
    }
    default:
      return null;
  }
}
