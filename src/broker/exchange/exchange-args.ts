/**
 * exchange.declare argument checks for the plugin exchange types, with the reply texts of the
 * RabbitMQ plugins (each failure is 406 PRECONDITION_FAILED on the channel unless noted), and
 * the readers that turn stored arguments into each type's options.
 *
 * Arguments come in two shapes: as decoded from the wire (numbers, bigints, Buffers, typed
 * { type, value } wrappers) at declare time, and JSON-safe as stored ({ $bigint }, { $bytes };
 * json-args.ts) when an Exchange is built. Every reader here accepts both.
 */
import { BrokerError, precondition } from '../errors.js';
import { argType } from '../json-args.js';
import { isExchangeType, type ExchangeType } from './exchange-types.js';

/** Properties rabbitmq_consistent_hash_exchange can hash on (its ?PROPERTIES). */
export const HASH_PROPERTIES = ['message_id', 'correlation_id', 'timestamp'] as const;
export type HashProperty = (typeof HASH_PROPERTIES)[number];

/** Inner types an x-delayed-message exchange may route as. */
export type DelayedInnerType = Exclude<ExchangeType, 'x-delayed-message'>;

export interface DedupOptions {
  /** Most keys the cache holds (x-cache-size). */
  size: number;
  /** Default time a key is remembered (x-cache-ttl), or null for "until evicted". */
  ttlMs: number | null;
}

export interface ConsistentHashOptions {
  /** hash-header: hash this header's value instead of the routing key. */
  header: string | null;
  /** hash-property: hash this basic property instead of the routing key. */
  property: HashProperty | null;
}

/** A typed field value ({ type, value }) as its value; anything else as it is. */
export function unwrapArg(v: unknown): unknown {
  while (v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && 'type' in v && 'value' in v) v = (v as { value: unknown }).value;
  return v;
}

/** A string argument (longstr, or bytes holding UTF-8), or undefined. */
export function stringArg(v: unknown): string | undefined {
  v = unwrapArg(v);
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v !== null && typeof v === 'object' && typeof (v as { $bytes?: unknown }).$bytes === 'string') {
    return Buffer.from((v as { $bytes: string }).$bytes, 'base64').toString('utf8');
  }
  return undefined;
}

/**
 * An integer argument: undefined when absent, NaN when present but not an integer. Numeric
 * strings count (the deduplication plugin accepts x-cache-size as a longstr).
 */
export function integerArg(v: unknown): number | undefined {
  v = unwrapArg(v);
  if (v === undefined) return undefined;
  if (typeof v === 'number') return Number.isInteger(v) ? v : NaN;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') return /^[+-]?\d+$/.test(v) ? Number(v) : NaN;
  if (v !== null && typeof v === 'object' && typeof (v as { $bigint?: unknown }).$bigint === 'string') return Number((v as { $bigint: string }).$bigint);
  return NaN;
}


/**
 * Checks the arguments of an exchange.declare of `type` and throws the BrokerError RabbitMQ
 * (with the plugin) would answer. Call it for every declare that is not passive, before the
 * exchange is created; types without rules of their own pass unless they use the Sluice
 * deduplication extension (`x-message-deduplication: true`).
 */
export function validateExchangeArgs(type: string, args: Record<string, unknown>, name: string, vhost: string): void {
  validateTypeArgs(type, args, name, vhost);
  const ext = args['x-message-deduplication'];
  if (type !== 'x-message-deduplication' && ext !== undefined) {
    const v = unwrapArg(ext);
    if (typeof v !== 'boolean') {
      throw precondition(`invalid type '${argType(ext)}' for arg 'x-message-deduplication' in exchange '${name}' in vhost '${vhost}'`);
    }
    if (v) validateDedup(args);
  }
}

function validateTypeArgs(type: string, args: Record<string, unknown>, name: string, vhost: string): void {
  switch (type) {
    case 'x-consistent-hash':
      validateConsistentHash(args, name, vhost);
      return;
    case 'x-message-deduplication':
      validateDedup(args);
      return;
    case 'x-delayed-message': {
      // rabbit_exchange_type_delayed_message:validate/1: a binary naming a registered type, not
      // itself; an unknown name fails in rabbit_exchange:check_type/1 (503, connection error).
      const inner = stringArg(args['x-delayed-type']);
      if (inner === undefined) throw precondition(`Invalid argument, 'x-delayed-type' must be an existing exchange type`);
      if (inner === 'x-delayed-message') throw precondition(`Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'`);
      if (!isExchangeType(inner)) throw new BrokerError('command-invalid', `COMMAND_INVALID - unknown exchange type '${inner}'`, 'connection');
      // The plugin then runs the inner type's own validation on the same arguments.
      validateTypeArgs(inner, args, name, vhost);
      return;
    }
    default:
      return;
  }
}

/** rabbit_exchange_type_consistent_hash:validate/1, plus type checks where the plugin would crash. */
function validateConsistentHash(args: Record<string, unknown>, name: string, vhost: string): void {
  const header = args['hash-header'];
  const property = args['hash-property'];
  for (const [k, v] of [['hash-header', header], ['hash-property', property]] as const) {
    if (v !== undefined && stringArg(v) === undefined) {
      throw precondition(`invalid type '${argType(v)}' for arg '${k}' in exchange '${name}' in vhost '${vhost}'`);
    }
  }
  if (header !== undefined && property !== undefined) throw precondition('hash-header and hash-property are mutually exclusive');
  if (property !== undefined) {
    const p = stringArg(property)!;
    if (!(HASH_PROPERTIES as readonly string[]).includes(p)) throw precondition(`Unsupported property: ${p}`);
  }
}

/** RabbitMQMessageDeduplication.Exchange.validate/1, texts included. */
function validateDedup(args: Record<string, unknown>): void {
  const size = integerArg(args['x-cache-size']);
  if (size === undefined || !(size > 0)) {
    throw precondition(`Missing or invalid argument, 'x-cache-size' must be an integer greater than 0`);
  }
  const ttl = integerArg(args['x-cache-ttl']);
  if (ttl !== undefined && !(ttl > 0)) throw precondition(`Invalid argument, 'x-cache-ttl' must be an integer greater than 0`);
  const persistence = args['x-cache-persistence'];
  if (persistence !== undefined) {
    const p = stringArg(persistence);
    // Accepted and ignored: Sluice keeps every deduplication cache on disk.
    if (p !== 'disk' && p !== 'memory') throw precondition(`Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'`);
  }
}

// ---- readers for validated (stored) arguments

/** The type an x-delayed-message exchange routes as, or null if its argument is unusable. */
export function delayedInnerType(args: Record<string, unknown>): DelayedInnerType | null {
  const t = stringArg(args['x-delayed-type']);
  if (t === undefined || !isExchangeType(t) || t === 'x-delayed-message') return null;
  return t;
}

export function consistentHashOptions(args: Record<string, unknown>): ConsistentHashOptions {
  const header = stringArg(args['hash-header']) ?? null;
  const p = header === null ? stringArg(args['hash-property']) : undefined;
  const property = p !== undefined && (HASH_PROPERTIES as readonly string[]).includes(p) ? (p as HashProperty) : null;
  return { header, property };
}

/**
 * The deduplication cache an exchange needs, or null: exchanges of type
 * x-message-deduplication (also as an x-delayed-message's inner type) and, as a Sluice
 * extension, any exchange declared with `x-message-deduplication: true`.
 */
export function dedupOptions(type: ExchangeType, args: Record<string, unknown>): DedupOptions | null {
  const inner = type === 'x-delayed-message' ? delayedInnerType(args) : type;
  if (inner !== 'x-message-deduplication' && unwrapArg(args['x-message-deduplication']) !== true) return null;
  const size = integerArg(args['x-cache-size']);
  if (size === undefined || !(size > 0)) return null;
  const ttl = integerArg(args['x-cache-ttl']);
  return { size, ttlMs: ttl !== undefined && ttl > 0 ? ttl : null };
}
