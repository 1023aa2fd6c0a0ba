/**
 * The queue.declare argument checks RabbitMQ 3.10 makes (rabbit_amqqueue:declare_args), with
 * its reply texts, plus those of the arguments Sluice adds (x-retry-delays, deduplication).
 */
import { precondition } from '../errors.js';
import { argType } from '../json-args.js';

export function fmtArg(v: unknown): string {
  return v === undefined ? 'none' : `the value '${JSON.stringify(v)}'`;
}


/**
 * The queue.declare argument checks RabbitMQ 3.10 makes (rabbit_amqqueue:declare_args), with
 * its reply texts: each failure is 406 PRECONDITION_FAILED on the channel. Unknown x- arguments
 * are accepted, as there.
 */
export function checkQueueArgs(args: Record<string, unknown>, queue: string, vhost: string): void {
  const fail = (k: string, why: string): never => {
    throw precondition(`invalid arg '${k}' for queue '${queue}' in vhost '${vhost}': ${why}`);
  };
  const int = (k: string, min: 0 | 1, max?: number): void => {
    const v = args[k];
    if (v === undefined) return;
    if (typeof v !== 'bigint' && !(typeof v === 'number' && Number.isInteger(v))) fail(k, `"expected integer, got ${argType(v)}"`);
    const n = Number(v);
    if (n < 0) fail(k, `{value_negative,${n}}`);
    if (n === 0 && min === 1) fail(k, `{value_zero,${n}}`);
    if (max !== undefined && n > max) fail(k, `{max_value_exceeded,${n}}`);
  };
  int('x-expires', 1);
  int('x-message-ttl', 0);
  int('x-max-length', 0);
  int('x-max-length-bytes', 0);
  int('x-max-priority', 0, 255);
  for (const k of ['x-dead-letter-exchange', 'x-dead-letter-routing-key']) {
    const v = args[k];
    if (v !== undefined && typeof v !== 'string') {
      throw precondition(`invalid type '${argType(v)}' for arg '${k}' in queue '${queue}' in vhost '${vhost}'`);
    }
  }
  if (args['x-dead-letter-routing-key'] !== undefined && args['x-dead-letter-exchange'] === undefined) {
    fail('x-dead-letter-routing-key', 'routing_key_but_no_dlx_defined');
  }
  const overflow = args['x-overflow'];
  if (overflow !== undefined && !(typeof overflow === 'string' && ['drop-head', 'reject-publish', 'reject-publish-dlx'].includes(overflow))) {
    fail('x-overflow', 'invalid_overflow');
  }
  const type = args['x-queue-type'];
  if (type !== undefined && !(typeof type === 'string' && ['classic', 'quorum', 'stream'].includes(type))) {
    fail('x-queue-type', `"unsupported queue type '${String(type)}'"`);
  }
  const sac = args['x-single-active-consumer'];
  if (sac !== undefined && typeof sac !== 'boolean') fail('x-single-active-consumer', `{unacceptable_type,${argType(sac)}}`);
  int('x-delivery-limit', 0);
  const retry = args['x-retry-delays'];
  if (retry !== undefined) {
    const ok = Array.isArray(retry) && retry.length > 0 && retry.every((d) => (typeof d === 'number' && Number.isInteger(d) && d >= 0) || (typeof d === 'bigint' && d >= 0n));
    if (!ok) fail('x-retry-delays', '"expected a non-empty array of non-negative integers (milliseconds)"');
  }
  const dedup = args['x-message-deduplication'];
  if (dedup !== undefined && typeof dedup !== 'boolean') fail('x-message-deduplication', `{unacceptable_type,${argType(dedup)}}`);
}
