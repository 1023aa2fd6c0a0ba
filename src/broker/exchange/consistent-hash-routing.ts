/**
 * x-consistent-hash (rabbitmq_consistent_hash_exchange): each message goes to exactly one
 * destination, picked by hashing its routing key (or the header named by `hash-header`, or the
 * property named by `hash-property`) onto a ring of points owned by the destinations.
 *
 * A binding's routing key is its weight, a positive integer. A destination owns
 * weight × POINTS_PER_WEIGHT points, at hash32(destKey + "\0" + i); weights of several
 * bindings to one destination add up. Routing takes the first point at or after the message's
 * hash, wrapping around. Unlike the plugin (whose ring depends on binding order and changes
 * across restarts), the ring here is a function of the set of (destination, total weight)
 * pairs only: a restart that re-adds the bindings in any order routes every key as before, and
 * adding or removing a destination moves only the keys that land on its points.
 *
 * Like the plugin, a message without the header or property to hash still routes, and all
 * such messages go to one (arbitrary but fixed) destination: they hash as MISSING_HASH.
 *
 * The ring is two parallel arrays, sorted: point hashes (Int32Array, as hash32 returns them)
 * and their destinations.
 * It is rebuilt lazily on the first route after a binding change, so binding N destinations at
 * start-up costs one sort; route() itself is a binary search and allocates nothing.
 */
import { precondition } from '../errors.js';
import { toJsonSafe } from '../json-args.js';
import type { BindingDefinition, DestinationKey, RoutableMessage } from './exchange.js';
import type { ConsistentHashOptions } from './exchange-args.js';
import { unwrapArg } from './exchange-args.js';
import { hash32, hash32Bytes } from './hash32.js';
import type { Routing } from './routing.js';

/**
 * Ring points per unit of weight. The plugin recommends single-digit weights; with one point
 * per unit four equal queues would get anywhere from a few percent to over half of the keys.
 * 100 points keeps each share within a few percent of its weight. Part of the ring's
 * definition: changing it moves keys.
 */
export const POINTS_PER_WEIGHT = 100;
/** Sum of the binding weights of one exchange: bounds the ring at 1M points (about 12 MB while built). */
export const MAX_TOTAL_WEIGHT = 10_000;
/** The hash of a message that lacks the header or property the exchange hashes on. */
const MISSING_HASH = 0;
/** Destination indexes are packed below the hash in one float64 for sorting ((hash + 2^31) · 2^21 + index < 2^53). */
const INDEX_SPACE = 2 ** 21;
const SIGN_OFFSET = 2 ** 31;

/** The weight a binding key stands for, as the plugin's validate_binding/2 reads it, or throws 406. */
export function bindingWeight(routingKey: string): number {
  // Erlang's list_to_integer/1: an optional sign and decimal digits, nothing else.
  if (!/^[+-]?\d+$/.test(routingKey)) {
    throw precondition(`The binding key must be an integer: <<${JSON.stringify(routingKey)}>>`);
  }
  const n = Number(routingKey);
  if (n < 1) throw precondition('The binding key must be greater than 0');
  return n;
}

export class ConsistentHashRouting implements Routing {
  readonly #header: string | null;
  readonly #property: string | null;
  /** Total weight per destination. */
  readonly #weights = new Map<DestinationKey, number>();
  #totalWeight = 0;
  /** Point hashes per destination, kept while its weight is unchanged (rebuilds only re-sort). */
  readonly #pointCache = new Map<DestinationKey, Int32Array>();
  #points = new Int32Array(0);
  #pointDest: DestinationKey[] = [];
  #dirty = false;

  constructor(opts: ConsistentHashOptions) {
    this.#header = opts.header;
    this.#property = opts.header === null ? opts.property : null;
  }

  check(b: BindingDefinition): void {
    const w = bindingWeight(b.routingKey);
    if (this.#totalWeight + w > MAX_TOTAL_WEIGHT) {
      throw precondition(
        `The binding key must be at most ${MAX_TOTAL_WEIGHT - this.#totalWeight}: the weights bound to exchange '${b.source}' in vhost '${b.vhost}' may add up to ${MAX_TOTAL_WEIGHT}`,
      );
    }
  }

  bind(b: BindingDefinition, dest: DestinationKey): void {
    // Bindings loaded from disk were checked when they were made; parse leniently here.
    const w = Number(b.routingKey);
    if (!(w >= 1)) return;
    this.#weights.set(dest, (this.#weights.get(dest) ?? 0) + w);
    this.#pointCache.delete(dest);
    this.#totalWeight += w;
    this.#dirty = true;
  }

  unbind(b: BindingDefinition, dest: DestinationKey): void {
    const w = Number(b.routingKey);
    const had = this.#weights.get(dest);
    if (!(w >= 1) || had === undefined) return;
    if (had - w > 0) this.#weights.set(dest, had - w);
    else this.#weights.delete(dest);
    this.#pointCache.delete(dest);
    this.#totalWeight -= Math.min(had, w);
    this.#dirty = true;
  }

  route(msg: RoutableMessage, out: Set<DestinationKey>): void {
    if (this.#dirty) this.#rebuild();
    const points = this.#points;
    const n = points.length;
    if (n === 0) return;
    const h = this.#hashOf(msg);
    // First point >= h; past the last one, wrap to the first.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    out.add(this.#pointDest[lo === n ? 0 : lo]!);
  }

  /** The number of ring points (for tests and management). */
  get ringSize(): number {
    if (this.#dirty) this.#rebuild();
    return this.#points.length;
  }

  #hashOf(msg: RoutableMessage): number {
    if (this.#header !== null) return hashValue(msg.headers()?.[this.#header]);
    if (this.#property !== null) return hashValue(msg.property(this.#property));
    return hash32(msg.routingKey);
  }

  #rebuild(): void {
    this.#dirty = false;
    // Destinations in a fixed order, so equal hashes break ties the same way every time.
    const dests = [...this.#weights.keys()].sort();
    let total = 0;
    const perDest: Int32Array[] = [];
    for (const d of dests) {
      let pts = this.#pointCache.get(d);
      if (pts === undefined) {
        const count = this.#weights.get(d)! * POINTS_PER_WEIGHT;
        pts = new Int32Array(count);
        for (let i = 0; i < count; i++) pts[i] = hash32(`${d}\u0000${i}`);
        this.#pointCache.set(d, pts);
      }
      perDest.push(pts);
      total += pts.length;
    }
    const packed = new Float64Array(total);
    let k = 0;
    for (let di = 0; di < dests.length; di++) {
      const pts = perDest[di]!;
      for (let i = 0; i < pts.length; i++) packed[k++] = (pts[i]! + SIGN_OFFSET) * INDEX_SPACE + di;
    }
    packed.sort();
    const points = new Int32Array(total);
    const pointDest = new Array<DestinationKey>(total);
    for (let i = 0; i < total; i++) {
      const v = packed[i]!;
      const di = v % INDEX_SPACE;
      points[i] = (v - di) / INDEX_SPACE - SIGN_OFFSET;
      pointDest[i] = dests[di]!;
    }
    this.#points = points;
    this.#pointDest = pointDest;
  }
}

/**
 * The hash of a header or property value. Strings hash as their UTF-8 bytes, byte strings as
 * themselves, numbers by their decimal text (the plugin hashes a timestamp as its decimal
 * seconds), so 42 and 42n and "42" land together. Absent or void: MISSING_HASH.
 */
function hashValue(v: unknown): number {
  v = unwrapArg(v);
  switch (typeof v) {
    case 'string':
      return hash32(v);
    case 'number':
    case 'bigint':
    case 'boolean':
      return hash32(String(v));
    case 'undefined':
      return MISSING_HASH;
    default:
      if (v === null) return MISSING_HASH;
      if (v instanceof Uint8Array) return hash32Bytes(v);
      if (v instanceof Date) return hash32(String(Math.floor(v.getTime() / 1000)));
      // Tables and arrays: rare as hash keys; a canonical JSON text keeps them stable.
      return hash32(JSON.stringify(toJsonSafe(v)));
  }
}
