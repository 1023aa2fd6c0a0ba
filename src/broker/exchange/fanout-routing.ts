/** Fanout exchange (AMQP 0-9-1 §3.1.3.2): every bound destination, whatever the routing key. */
import type { BindingDefinition, DestinationKey, RoutableMessage } from './exchange.js';
import type { Routing } from './routing.js';

export class FanoutRouting implements Routing {
  readonly #dests: DestinationKey[] = [];
  /** Bindings per destination (they may differ in routing key or arguments). */
  readonly #counts = new Map<DestinationKey, number>();

  bind(_b: BindingDefinition, dest: DestinationKey): void {
    const n = this.#counts.get(dest) ?? 0;
    this.#counts.set(dest, n + 1);
    if (n === 0) this.#dests.push(dest);
  }

  unbind(_b: BindingDefinition, dest: DestinationKey): void {
    const n = (this.#counts.get(dest) ?? 1) - 1;
    if (n > 0) {
      this.#counts.set(dest, n);
      return;
    }
    this.#counts.delete(dest);
    const i = this.#dests.indexOf(dest);
    if (i >= 0) this.#dests.splice(i, 1);
  }

  route(_msg: RoutableMessage, out: Set<DestinationKey>): void {
    const d = this.#dests;
    for (let i = 0; i < d.length; i++) out.add(d[i]!);
  }
}
