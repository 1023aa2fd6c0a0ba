/**
 * An exchange and its bindings. Routing returns the set of destinations (queues or, for
 * exchange-to-exchange bindings, exchanges) for a routing key and headers.
 */
import { headersMatch } from './headers-match.js';
import { TopicTrie } from './topic-trie.js';

export const EXCHANGE_TYPES = ['direct', 'fanout', 'topic', 'headers'] as const;
export type ExchangeType = (typeof EXCHANGE_TYPES)[number];

export interface ExchangeDefinition {
  vhost: string;
  name: string;
  type: ExchangeType;
  durable: boolean;
  autoDelete: boolean;
  internal: boolean;
  args: Record<string, unknown>;
}

export interface BindingDefinition {
  vhost: string;
  source: string;
  destinationType: 'queue' | 'exchange';
  destination: string;
  routingKey: string;
  args: Record<string, unknown>;
}

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

export class Exchange {
  readonly def: ExchangeDefinition;
  readonly bindings = new Map<string, BindingDefinition>();
  #direct = new Map<string, Set<DestinationKey>>();
  #fanout = new Map<DestinationKey, number>();
  #topic = new TopicTrie<DestinationKey>();
  #topicCounts = new Map<string, number>();

  constructor(def: ExchangeDefinition) {
    this.def = def;
  }

  get name(): string {
    return this.def.name;
  }

  /** Adds a binding; false if an identical one exists. */
  bind(b: BindingDefinition): boolean {
    const id = bindingId(b);
    if (this.bindings.has(id)) return false;
    this.bindings.set(id, b);
    const key = destKey(b.destinationType, b.destination);
    switch (this.def.type) {
      case 'direct': {
        let s = this.#direct.get(b.routingKey);
        if (s === undefined) this.#direct.set(b.routingKey, (s = new Set()));
        s.add(key);
        break;
      }
      case 'fanout':
        this.#fanout.set(key, (this.#fanout.get(key) ?? 0) + 1);
        break;
      case 'topic': {
        const tk = `${b.routingKey}\u0000${key}`;
        const n = this.#topicCounts.get(tk) ?? 0;
        if (n === 0) this.#topic.add(b.routingKey, key);
        this.#topicCounts.set(tk, n + 1);
        break;
      }
      case 'headers':
        break;
    }
    return true;
  }

  unbind(b: BindingDefinition): boolean {
    const id = bindingId(b);
    if (!this.bindings.delete(id)) return false;
    const key = destKey(b.destinationType, b.destination);
    switch (this.def.type) {
      case 'direct': {
        // Another binding with the same key and destination but other arguments keeps it routed.
        if (!this.#hasOther(b, key)) this.#direct.get(b.routingKey)?.delete(key);
        break;
      }
      case 'fanout': {
        const n = (this.#fanout.get(key) ?? 1) - 1;
        if (n <= 0) this.#fanout.delete(key);
        else this.#fanout.set(key, n);
        break;
      }
      case 'topic': {
        const tk = `${b.routingKey}\u0000${key}`;
        const n = (this.#topicCounts.get(tk) ?? 1) - 1;
        if (n <= 0) {
          this.#topicCounts.delete(tk);
          this.#topic.remove(b.routingKey, key);
        } else this.#topicCounts.set(tk, n);
        break;
      }
      case 'headers':
        break;
    }
    return true;
  }

  #hasOther(b: BindingDefinition, key: DestinationKey): boolean {
    for (const o of this.bindings.values()) {
      if (o.routingKey === b.routingKey && destKey(o.destinationType, o.destination) === key) return true;
    }
    return false;
  }

  /** Bindings whose destination is `key` (to remove them when it is deleted). */
  bindingsTo(type: 'queue' | 'exchange', name: string): BindingDefinition[] {
    const out: BindingDefinition[] = [];
    for (const b of this.bindings.values()) if (b.destinationType === type && b.destination === name) out.push(b);
    return out;
  }

  route(routingKey: string, headers: () => Record<string, unknown> | undefined, out: Set<DestinationKey>): void {
    switch (this.def.type) {
      case 'direct': {
        const s = this.#direct.get(routingKey);
        if (s !== undefined) for (const k of s) out.add(k);
        return;
      }
      case 'fanout':
        for (const k of this.#fanout.keys()) out.add(k);
        return;
      case 'topic':
        this.#topic.match(routingKey, out);
        return;
      case 'headers': {
        if (this.bindings.size === 0) return;
        const h = headers();
        for (const b of this.bindings.values()) {
          if (headersMatch(b.args, h)) out.add(destKey(b.destinationType, b.destination));
        }
        return;
      }
    }
  }
}
