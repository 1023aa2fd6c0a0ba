/**
 * Routing a message through a vhost's exchanges to the queues it reaches: exchange-to-exchange
 * bindings, alternate exchanges (each exchange visited once, so loops end) and the extra keys
 * of sender-selected distribution (CC, BCC).
 *
 * Publishing caches the result per exchange and routing key when every exchange on the way
 * routes by key alone (direct, fanout, topic): one map lookup instead of a walk, set
 * operations and a queue lookup per destination. Any topology change empties the caches
 * (exchange.ts `topology`).
 */
import { topology, type Exchange, type DestinationKey, type RoutableMessage } from '../exchange/exchange.js';
import type { MessageFormat } from '../message-format.js';
import type { Queue } from '../queue/queue.js';
import type { Vhost } from '../vhost/vhost.js';

/** Routing keys cached per exchange before its cache starts over (bounds memory for key-per-message traffic). */
const ROUTE_CACHE_KEYS = 1024;

/** The message being routed; headers decoded at most once. */
export class Routable implements RoutableMessage {
  routingKey = '';
  props: Buffer = Buffer.alloc(0);
  readonly #format: MessageFormat;
  #headers: Record<string, unknown> | undefined = undefined;
  #decoded = false;

  constructor(format: MessageFormat) {
    this.#format = format;
  }

  reset(routingKey: string, props: Buffer): this {
    this.routingKey = routingKey;
    this.props = props;
    this.#decoded = false;
    this.#headers = undefined;
    return this;
  }

  headers(): Record<string, unknown> | undefined {
    if (!this.#decoded) {
      this.#headers = this.#format.headers(this.props);
      this.#decoded = true;
    }
    return this.#headers;
  }

  property(name: string): unknown {
    return this.#format.property(this.props, name);
  }
}

export class Router {
  readonly #format: MessageFormat;
  /** Reused by publish() so that routing allocates nothing per message. */
  readonly #message: Routable;
  readonly #out = new Set<DestinationKey>();
  readonly #found = new Set<DestinationKey>();
  readonly #seen = new Set<Exchange>();
  readonly #pending: Exchange[] = [];
  /** Set by route(): every exchange it visited routes by key alone. */
  #keyRouted = true;

  constructor(format: MessageFormat) {
    this.#format = format;
    this.#message = new Routable(format);
  }

  /** The shared message object, reset for a publish (valid until the next call). */
  message(routingKey: string, props: Buffer): Routable {
    return this.#message.reset(routingKey, props);
  }

  /** A message object of its own, for routing that may run inside a publish's delivery loop. */
  freshMessage(routingKey: string, props: Buffer): Routable {
    return new Routable(this.#format).reset(routingKey, props);
  }

  /**
   * The queues `msg` reaches from `ex`. `fresh` routes with sets of its own: dead-lettering
   * runs inside a publish's delivery loop (drop-head), which still iterates the shared ones.
   */
  route(vh: Vhost, ex: Exchange, msg: RoutableMessage, fresh = false): Set<DestinationKey> {
    const out = fresh ? new Set<DestinationKey>() : this.#out;
    const found = fresh ? new Set<DestinationKey>() : this.#found;
    const seen = fresh ? new Set<Exchange>() : this.#seen;
    const pending: Exchange[] = fresh ? [] : this.#pending;
    out.clear();
    seen.clear();
    seen.add(ex);
    pending.push(ex);
    let keyRouted = true;
    while (pending.length > 0) {
      const e = pending.pop()!;
      if (!e.keyRouted) keyRouted = false;
      found.clear();
      e.route(msg, found);
      if (found.size === 0 && e.def.args['alternate-exchange'] !== undefined) {
        const ae = vh.exchanges.get(String(e.def.args['alternate-exchange']));
        if (ae !== undefined && !seen.has(ae)) {
          seen.add(ae);
          pending.push(ae);
        }
      }
      for (const k of found) {
        if (k.charCodeAt(0) === 113 /* q */) out.add(k);
        else {
          const next = vh.exchanges.get(k.slice(2));
          if (next !== undefined && !seen.has(next)) {
            seen.add(next);
            pending.push(next);
          }
        }
      }
    }
    if (!fresh) this.#keyRouted = keyRouted;
    return out;
  }

  /**
   * The queues a publish to `ex` reaches (route() resolved to queues), from the exchange's
   * cache when it can be. The array is shared: read it, do not keep or change it.
   */
  routeQueues(vh: Vhost, ex: Exchange, msg: RoutableMessage): readonly Queue[] {
    if (ex.keyRouted) {
      if (ex.routeCacheVersion !== topology.version) {
        ex.routeCache.clear();
        ex.routeCacheVersion = topology.version;
      }
      const hit = ex.routeCache.get(msg.routingKey) as readonly Queue[] | undefined;
      if (hit !== undefined) return hit;
    }
    const qs = this.queuesOf(vh, this.route(vh, ex, msg));
    if (ex.keyRouted && this.#keyRouted) {
      if (ex.routeCache.size >= ROUTE_CACHE_KEYS) ex.routeCache.clear();
      ex.routeCache.set(msg.routingKey, qs);
    }
    return qs;
  }

  /** The queues named by destination keys (missing ones left out); a new array. */
  queuesOf(vh: Vhost, dests: Iterable<DestinationKey>): Queue[] {
    const out: Queue[] = [];
    for (const k of dests) {
      const q = vh.queues.get(k.slice(2));
      if (q !== undefined) out.push(q);
    }
    return out;
  }

  /** `dests` plus what the extra routing keys (CC, BCC) reach. */
  routeKeys(vh: Vhost, ex: Exchange, dests: Set<DestinationKey>, keys: string[], props: Buffer): Set<DestinationKey> {
    const all = new Set(dests);
    for (const k of keys) for (const d of this.route(vh, ex, this.freshMessage(k, props), true)) all.add(d);
    return all;
  }
}
