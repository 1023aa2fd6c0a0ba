/**
 * Headers exchange (RabbitMQ rabbit_exchange_type_headers): each binding's arguments are
 * matched against the message headers (headers-match.ts). The headers are decoded only when
 * there is a binding to match them against.
 */
import type { BindingDefinition, DestinationKey, RoutableMessage } from './exchange.js';
import { headersMatch } from './headers-match.js';
import type { Routing } from './routing.js';

interface Entry {
  id: string;
  args: Record<string, unknown>;
  dest: DestinationKey;
}

export class HeadersRouting implements Routing {
  readonly #entries: Entry[] = [];

  bind(b: BindingDefinition, dest: DestinationKey, id: string): void {
    this.#entries.push({ id, args: b.args, dest });
  }

  unbind(_b: BindingDefinition, _dest: DestinationKey, id: string): void {
    const i = this.#entries.findIndex((e) => e.id === id);
    if (i >= 0) this.#entries.splice(i, 1);
  }

  route(msg: RoutableMessage, out: Set<DestinationKey>): void {
    const entries = this.#entries;
    if (entries.length === 0) return;
    const h = msg.headers();
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (headersMatch(e.args, h)) out.add(e.dest);
    }
  }
}
