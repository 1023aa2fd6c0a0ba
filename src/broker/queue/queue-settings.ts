/**
 * What a queue's arguments and its policy ask of it, resolved once when the queue opens.
 * Argument and policy names are RabbitMQ's. As in RabbitMQ, a queue's own x- argument wins over
 * the policy's value, except for the numeric limits (TTLs, lengths, delivery limit), where the
 * lower of the two applies. x-retry-delays is Sluice's own (README, "Retry with backoff").
 */
import type { PolicyDefinition } from '../policy/policy.js';

export type Overflow = 'drop-head' | 'reject-publish' | 'reject-publish-dlx';

export interface QueueSettings {
  messageTtl: number | undefined;
  expires: number | undefined;
  deadLetterExchange: string | undefined;
  deadLetterRoutingKey: string | undefined;
  maxLength: number | undefined;
  maxLengthBytes: number | undefined;
  overflow: Overflow;
  deliveryLimit: number | undefined;
  maxPriority: number | undefined;
  singleActiveConsumer: boolean;
  retryDelays: number[] | undefined;
  deduplicate: boolean;
  /** Redeliveries carry x-delivery-count (quorum queues do; so does any queue with a delivery limit). */
  countDeliveries: boolean;
}

// Stored definitions hold arguments in their JSON-safe form (json-args.ts).
function num(v: unknown): number | undefined {
  if (v !== null && typeof v === 'object' && '$bigint' in v) return Number((v as { $bigint: string }).$bigint);
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

function str(v: unknown): string | undefined {
  if (v !== null && typeof v === 'object' && '$bytes' in v) return Buffer.from((v as { $bytes: string }).$bytes, 'base64').toString('utf8');
  return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : undefined;
}

export function resolveQueueSettings(args: Record<string, unknown>, policy: PolicyDefinition | undefined): QueueSettings {
  const p = policy?.definition ?? {};
  const pick = <T>(arg: string, pol: string, conv: (v: unknown) => T | undefined): T | undefined => conv(args[arg]) ?? conv(p[pol]);
  // RabbitMQ's rule for numeric limits set both ways: the stricter (lower) one applies.
  const lower = (arg: string, pol: string): number | undefined => {
    const a = num(args[arg]);
    const b = num(p[pol]);
    return a === undefined ? b : b === undefined ? a : Math.min(a, b);
  };
  const overflow = pick('x-overflow', 'overflow', str);
  const retry = args['x-retry-delays'] ?? p['retry-delays'];
  const deliveryLimit = lower('x-delivery-limit', 'delivery-limit');
  return {
    messageTtl: lower('x-message-ttl', 'message-ttl'),
    expires: lower('x-expires', 'expires'),
    deadLetterExchange: pick('x-dead-letter-exchange', 'dead-letter-exchange', str),
    deadLetterRoutingKey: pick('x-dead-letter-routing-key', 'dead-letter-routing-key', str),
    maxLength: lower('x-max-length', 'max-length'),
    maxLengthBytes: lower('x-max-length-bytes', 'max-length-bytes'),
    overflow: overflow === 'reject-publish' || overflow === 'reject-publish-dlx' ? overflow : 'drop-head',
    deliveryLimit,
    maxPriority: pick('x-max-priority', 'max-priority', num),
    singleActiveConsumer: args['x-single-active-consumer'] === true || p['single-active-consumer'] === true,
    retryDelays: Array.isArray(retry) ? retry.map((d) => num(d) ?? 0) : undefined,
    deduplicate: args['x-message-deduplication'] === true,
    countDeliveries: deliveryLimit !== undefined || str(args['x-queue-type']) === 'quorum',
  };
}
