/**
 * An exchange and its bindings. Routing adds the destinations (queues or, for
 * exchange-to-exchange bindings, exchanges) of a message to a set. Each type's routing lives
 * in a Routing strategy (routing.ts); an x-delayed-message exchange routes with the strategy
 * of its x-delayed-type, and an x-message-deduplication exchange routes as fanout. The delay
 * and the deduplication themselves happen in the broker's publish path, which asks `delayed`
 * and `dedup`.
 */
import { ConsistentHashRouting } from './consistent-hash-routing.js';
import { DirectRouting } from './direct-routing.js';
import { consistentHashOptions, dedupOptions, delayedInnerType, type DedupOptions } from './exchange-args.js';
import type { ExchangeType } from './exchange-types.js';
import { FanoutRouting } from './fanout-routing.js';
import { HeadersRouting } from './headers-routing.js';
import type { Routing } from './routing.js';
import { TopicRouting } from './topic-routing.js';

export { EXCHANGE_TYPES, isExchangeType, type ExchangeType } from './exchange-types.js';
export { validateExchangeArgs, type DedupOptions } from './exchange-args.js';

export interface ExchangeDefinition {
  vhost: string;
  name: string;
  type: ExchangeType;
  durable: boolean;
  autoDelete: boolean;
  internal: boolean;
  args: Record<string, unknown>;
  /** The log of its deduplication cache, one per incarnation (set by the broker). */
  dedupLog?: string;
}

export interface BindingDefinition {
  vhost: string;
  source: string;
  destinationType: 'queue' | 'exchange';
  destination: string;
  routingKey: string;
  args: Record<string, unknown>;
}

/** What routing may look at. headers() and property() decode lazily: most exchanges need neither. */
export interface RoutableMessage {
  readonly routingKey: string;
  headers(): Record<string, unknown> | undefined;
  /** A basic property by its AMQP field name: message_id, correlation_id, timestamp, ... */
  property(name: string): unknown;
}

/**
 * Bumped by every change that can change where a message goes (a binding, an exchange or a
 * queue added or removed): cached routes older than it are dropped (router.ts).
 */
export const topology = { version: 0 };

/** A destination key: "q:<name>" or "e:<name>"; keeps routing results cheap to dedupe. */
export type DestinationKey = string;
export const destKey = (type: 'queue' | 'exchange', name: string): DestinationKey => (type === 'queue' ? `q:${name}` : `e:${name}`);

export function bindingId(b: BindingDefinition): string {
  return JSON.stringify([b.vhost, b.source, b.destinationType, b.destination, b.routingKey, sortedArgs(b.args)]);
}

function sortedArgs(args: Record<string, unknown>): unknown {
  return Object.keys(args)
    .sort()
    .map((k) => [k, String((args[k] as { value?: unknown })?.value ?? args[k])]);
}

/** The type whose routing an exchange of `def` uses. */
export function routingTypeOf(def: Pick<ExchangeDefinition, 'type' | 'args'>): Exclude<ExchangeType, 'x-delayed-message'> {
  if (def.type !== 'x-delayed-message') return def.type;
  // Validated at declare; a stored definition that lost its inner type routes as direct, the
  // plugin's most common x-delayed-type, rather than failing the broker's start.
  return delayedInnerType(def.args) ?? 'direct';
}

function createRouting(def: ExchangeDefinition): Routing {
  const type = routingTypeOf(def);
  switch (type) {
    case 'direct':
      return new DirectRouting();
    case 'fanout':
    case 'x-message-deduplication':
      return new FanoutRouting();
    case 'topic':
      return new TopicRouting();
    case 'headers':
      return new HeadersRouting();
    case 'x-consistent-hash':
      return new ConsistentHashRouting(consistentHashOptions(def.args));
  }
}

export class Exchange {
  readonly def: ExchangeDefinition;
  readonly bindings = new Map<string, BindingDefinition>();
  readonly #routing: Routing;
  readonly #dedup: DedupOptions | null;
  /** Where a message goes depends on its routing key alone (direct, fanout, topic). */
  readonly keyRouted: boolean;
  /** Routing key -> the queues reached, valid while routeCacheVersion === topology.version (router.ts). */
  readonly routeCache = new Map<string, readonly unknown[]>();
  routeCacheVersion = -1;

  constructor(def: ExchangeDefinition) {
    this.def = def;
    this.#routing = createRouting(def);
    this.#dedup = dedupOptions(def.type, def.args);
    const t = routingTypeOf(def);
    this.keyRouted = t === 'direct' || t === 'fanout' || t === 'topic' || t === 'x-message-deduplication';
  }

  get name(): string {
    return this.def.name;
  }

  /** The type this exchange routes as (its x-delayed-type for x-delayed-message). */
  get routingType(): Exclude<ExchangeType, 'x-delayed-message'> {
    return routingTypeOf(this.def);
  }

  /** An x-delayed-message exchange: publishes with a positive x-delay wait before routing. */
  get delayed(): boolean {
    return this.def.type === 'x-delayed-message';
  }

  /** The deduplication cache this exchange needs (size and default TTL), or null. */
  get dedup(): DedupOptions | null {
    return this.#dedup;
  }

  /**
   * Adds a binding; false if an identical one exists. Throws a BrokerError (406) if the type
   * refuses it (x-consistent-hash: the routing key must be a positive integer weight).
   */
  bind(b: BindingDefinition): boolean {
    const id = bindingId(b);
    if (this.bindings.has(id)) return false; // it was checked when it was first made
    this.#routing.check?.(b);
    this.bindings.set(id, b);
    this.#routing.bind(b, destKey(b.destinationType, b.destination), id);
    topology.version++;
    return true;
  }

  unbind(b: BindingDefinition): boolean {
    const id = bindingId(b);
    const had = this.bindings.get(id);
    if (had === undefined) return false;
    this.bindings.delete(id);
    // The stored binding, not the caller's copy: routing state was built from it.
    this.#routing.unbind(had, destKey(had.destinationType, had.destination), id);
    topology.version++;
    return true;
  }

  /** Bindings whose destination is `key` (to remove them when it is deleted). */
  bindingsTo(type: 'queue' | 'exchange', name: string): BindingDefinition[] {
    const out: BindingDefinition[] = [];
    for (const b of this.bindings.values()) if (b.destinationType === type && b.destination === name) out.push(b);
    return out;
  }

  /** Adds the destinations of `msg` to `out`. Allocates nothing in the steady state. */
  route(msg: RoutableMessage, out: Set<DestinationKey>): void {
    this.#routing.route(msg, out);
  }
}
