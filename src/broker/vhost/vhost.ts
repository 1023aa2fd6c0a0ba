/** A virtual host: its own exchanges and queues, isolated from other vhosts. */
import { Exchange, type ExchangeDefinition } from '../exchange/exchange.js';
import type { Queue } from '../queue/queue.js';

export const DEFAULT_EXCHANGES: ReadonlyArray<Pick<ExchangeDefinition, 'name' | 'type'>> = [
  { name: '', type: 'direct' },
  { name: 'amq.direct', type: 'direct' },
  { name: 'amq.fanout', type: 'fanout' },
  { name: 'amq.topic', type: 'topic' },
  { name: 'amq.headers', type: 'headers' },
  { name: 'amq.match', type: 'headers' },
];

export class Vhost {
  readonly name: string;
  readonly exchanges = new Map<string, Exchange>();
  readonly queues = new Map<string, Queue>();

  constructor(name: string) {
    this.name = name;
    for (const d of DEFAULT_EXCHANGES) {
      this.exchanges.set(d.name, new Exchange({ vhost: name, name: d.name, type: d.type, durable: true, autoDelete: false, internal: false, args: {} }));
    }
  }
}
