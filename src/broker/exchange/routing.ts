/**
 * How one exchange type routes: the bindings it holds in its own shape and the match against
 * a message. Exchange keeps the binding set (duplicates, ids, bindingsTo); a Routing sees each
 * distinct binding once on bind and once on unbind, and never a binding it was not given.
 *
 * route() runs once per publish per exchange visited: it must not allocate in the steady state
 * (lazy rebuilds after a binding change are the exception) and adds to `out` instead of
 * returning a collection.
 */
import type { BindingDefinition, DestinationKey, RoutableMessage } from './exchange.js';

export interface Routing {
  /** Throws a BrokerError (406) if this type refuses the binding; called before bind(). */
  check?(b: BindingDefinition): void;
  /** `id` is the binding's bindingId(); `dest` its destination key. */
  bind(b: BindingDefinition, dest: DestinationKey, id: string): void;
  unbind(b: BindingDefinition, dest: DestinationKey, id: string): void;
  route(msg: RoutableMessage, out: Set<DestinationKey>): void;
}
