/** Topic exchange (AMQP 0-9-1 §3.1.3.3): binding keys with `*` and `#` matched by a trie. */
import type { BindingDefinition, DestinationKey, RoutableMessage } from './exchange.js';
import type { Routing } from './routing.js';
import { TopicTrie } from './topic-trie.js';

export class TopicRouting implements Routing {
  readonly #trie = new TopicTrie<DestinationKey>();
  /** Bindings per (binding key, destination): the trie holds each pair once. */
  readonly #counts = new Map<string, number>();

  bind(b: BindingDefinition, dest: DestinationKey): void {
    const ck = `${b.routingKey}\u0000${dest}`;
    const n = this.#counts.get(ck) ?? 0;
    if (n === 0) this.#trie.add(b.routingKey, dest);
    this.#counts.set(ck, n + 1);
  }

  unbind(b: BindingDefinition, dest: DestinationKey): void {
    const ck = `${b.routingKey}\u0000${dest}`;
    const n = (this.#counts.get(ck) ?? 1) - 1;
    if (n > 0) {
      this.#counts.set(ck, n);
      return;
    }
    this.#counts.delete(ck);
    this.#trie.remove(b.routingKey, dest);
  }

  route(msg: RoutableMessage, out: Set<DestinationKey>): void {
    this.#trie.match(msg.routingKey, out);
  }
}
