/** A virtual host: its own exchanges and queues, isolated from other vhosts. */
import { Exchange, topology, type ExchangeDefinition } from '../exchange/exchange.js';
import type { Queue } from '../queue/queue.js';

export const DEFAULT_EXCHANGES: ReadonlyArray<Pick<ExchangeDefinition, 'name' | 'type'>> = [
  { name: '', type: 'direct' },
  { name: 'amq.direct', type: 'direct' },
  { name: 'amq.fanout', type: 'fanout' },
  { name: 'amq.topic', type: 'topic' },
  { name: 'amq.headers', type: 'headers' },
  { name: 'amq.match', type: 'headers' },
];

/** A name -> object map whose changes invalidate cached routes (exchange/exchange.ts topology). */
class TopologyMap<V> extends Map<string, V> {
  override set(k: string, v: V): this {
    topology.version++;
    return super.set(k, v);
  }
  override delete(k: string): boolean {
    topology.version++;
    return super.delete(k);
  }
  override clear(): void {
    topology.version++;
    super.clear();
  }
}

export class Vhost {
  readonly name: string;
  readonly exchanges: Map<string, Exchange> = new TopologyMap<Exchange>();
  readonly queues: Map<string, Queue> = new TopologyMap<Queue>();

  constructor(name: string) {
    this.name = name;
    for (const d of DEFAULT_EXCHANGES) {
      this.exchanges.set(d.name, new Exchange({ vhost: name, name: d.name, type: d.type, durable: true, autoDelete: false, internal: false, args: {} }));
    }
  }
}
