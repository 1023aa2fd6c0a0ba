/**
 * Dead-lettering (rabbit_dead_letter): a message that left a queue unconsumed is republished to
 * the queue's dead-letter exchange with its x-death history updated.
 */
import type { DeathReason } from './message-format.js';
import { encodeStoredMessage, MessageFlags, StoredMessageView } from './message.js';
import type { Queue } from './queue/queue.js';
import type { DeliveryHost } from './schedule/scheduled-delivery.js';

/**
 * Republishes a message that left `q` unconsumed to the queue's dead-letter exchange, with
 * x-death updated (rabbit_dead_letter). At most once, as in RabbitMQ: no confirm covers it.
 * A cycle with no rejection in it (expired → same queue) drops the message for that queue.
 */
export function deadLetter(host: DeliveryHost, q: Queue, payload: Buffer, flags: number, reason: DeathReason): void {
  const dlx = q.settings.deadLetterExchange;
  if (dlx === undefined) return;
  const vh = host.vhost(q.def.vhost);
  const ex = vh?.exchanges.get(dlx);
  if (vh === undefined || ex === undefined) return; // RabbitMQ drops it too
  const v = new StoredMessageView().parse(payload);
  const cc = host.format.senderKeys(v.props)?.cc ?? [];
  const routingKey = q.settings.deadLetterRoutingKey ?? v.routingKey;
  const props = host.format.deadLettered(v.props, { queue: q.name, reason, exchange: v.exchange, routingKeys: [v.routingKey, ...cc], time: Date.now() });
  let dests = host.router.route(vh, ex, host.router.freshMessage(routingKey, props), true);
  // Without a dead-letter routing key the message keeps all its keys, CC included.
  if (q.settings.deadLetterRoutingKey === undefined && cc.length > 0) dests = host.router.routeKeys(vh, ex, dests, cc, props);
  if (reason !== 'rejected') {
    const deaths = host.format.deaths(props);
    for (const key of [...dests]) if (isCycle(key.slice(2), deaths)) dests.delete(key);
  }
  if (dests.size === 0) return;
  const body = v.body;
  const out = encodeStoredMessage(dlx, routingKey, props, body);
  try {
    host.deliverTo(vh, dests, out, props, body.length, flags & MessageFlags.PERSISTENT);
  } catch (err) {
    host.onError(err, 'dead-lettering');
  }
}

/**
 * rabbit_dead_letter:is_cycle: the target queue is in the x-death history and every death
 * since it (and that one) was automatic, not a rejection.
 */
function isCycle(queue: string, deaths: Array<{ queue: string; reason: string }>): boolean {
  for (const d of deaths) {
    if (d.reason === 'rejected') return false;
    if (d.queue === queue) return true;
  }
  return false;
}
