/**
 * Direct exchange (AMQP 0-9-1 §3.1.3.1): a message goes to the destinations bound with exactly
 * its routing key. Destinations are kept per key in an array for an allocation-free route(),
 * with a count per (key, destination): bindings differing only in arguments share one entry.
 */
import type { BindingDefinition, DestinationKey, RoutableMessage } from './exchange.js';
import type { Routing } from './routing.js';

export class DirectRouting implements Routing {
  readonly #byKey = new Map<string, DestinationKey[]>();
  readonly #counts = new Map<string, number>();

  bind(b: BindingDefinition, dest: DestinationKey): void {
    const ck = `${b.routingKey}\u0000${dest}`;
    const n = this.#counts.get(ck) ?? 0;
    this.#counts.set(ck, n + 1);
    if (n > 0) return;
    const list = this.#byKey.get(b.routingKey);
    if (list === undefined) this.#byKey.set(b.routingKey, [dest]);
    else list.push(dest);
  }

  unbind(b: BindingDefinition, dest: DestinationKey): void {
    const ck = `${b.routingKey}\u0000${dest}`;
    const n = (this.#counts.get(ck) ?? 1) - 1;
    if (n > 0) {
      this.#counts.set(ck, n);
      return;
    }
    this.#counts.delete(ck);
    const list = this.#byKey.get(b.routingKey);
    if (list === undefined) return;
    const i = list.indexOf(dest);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#byKey.delete(b.routingKey);
  }

  route(msg: RoutableMessage, out: Set<DestinationKey>): void {
    const list = this.#byKey.get(msg.routingKey);
    if (list === undefined) return;
    for (let i = 0; i < list.length; i++) out.add(list[i]!);
  }
}
