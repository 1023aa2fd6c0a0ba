/**
 * The broker's MessageFormat for AMQP 0-9-1 basic properties: the stored property bytes are
 * read by skipping to the field wanted, and rewritten only where a feature changes them
 * (dead-lettering, delivery and retry counts), keeping every other byte as the publisher sent
 * it. x-death follows RabbitMQ 3.10 (rabbit_dead_letter:x_death_event).
 */
import type { DeathEvent, MessageFormat } from '../../broker/mod.js';
import {
  decodeProperties,
  propertiesToBuffer,
  readExpiration,
  readHeaders,
  readPriority,
  replaceHeaders,
  typed,
  TypedValue,
  type BasicProperties,
  type FieldTable,
  type FieldValue,
} from './codec/mod.js';

const PROPERTY_KEYS: Record<string, keyof BasicProperties> = {
  content_type: 'contentType',
  content_encoding: 'contentEncoding',
  delivery_mode: 'deliveryMode',
  priority: 'priority',
  correlation_id: 'correlationId',
  reply_to: 'replyTo',
  expiration: 'expiration',
  message_id: 'messageId',
  timestamp: 'timestamp',
  type: 'type',
  user_id: 'userId',
  app_id: 'appId',
  cluster_id: 'clusterId',
};

function plain(v: unknown): unknown {
  return v instanceof TypedValue ? plain(v.value) : v;
}

function str(v: unknown): string | undefined {
  const p = plain(v);
  if (typeof p === 'string') return p;
  if (Buffer.isBuffer(p)) return p.toString('utf8');
  return undefined;
}

export const amqpMessageFormat: MessageFormat = {
  headers(props) {
    return readHeaders(props) as Record<string, unknown> | undefined;
  },

  header(props, name) {
    const h = readHeaders(props);
    return h === undefined ? undefined : h[name];
  },

  property(props, name) {
    const key = PROPERTY_KEYS[name] ?? (name as keyof BasicProperties);
    return decodeProperties(props, 0, props.length)[key];
  },

  expiration(props) {
    return readExpiration(props);
  },

  priority(props) {
    return readPriority(props);
  },

  deaths(props) {
    const h = readHeaders(props);
    const list = h?.['x-death'];
    if (!Array.isArray(list)) return [];
    const out: Array<{ queue: string; reason: string }> = [];
    for (const e of list) {
      if (e === null || typeof e !== 'object' || Array.isArray(e) || Buffer.isBuffer(e)) continue;
      const t = e as FieldTable;
      out.push({ queue: str(t['queue']) ?? '', reason: str(t['reason']) ?? '' });
    }
    return out;
  },

  deadLettered(props, death: DeathEvent) {
    const p = decodeProperties(props, 0, props.length, { typed: true });
    const headers: FieldTable = { ...(p.headers ?? {}) };
    const expiration = p.expiration;
    delete p.expiration;
    const prior = Array.isArray(plain(headers['x-death'])) ? (plain(headers['x-death']) as FieldValue[]) : [];
    let found: FieldTable | null = null;
    const rest: FieldValue[] = [];
    for (const e of prior) {
      const t = plain(e);
      if (found === null && t !== null && typeof t === 'object' && !Array.isArray(t) && !Buffer.isBuffer(t)) {
        const entry = t as FieldTable;
        if (str(entry['queue']) === death.queue && str(entry['reason']) === death.reason) {
          found = entry;
          continue;
        }
      }
      rest.push(e);
    }
    let entry: FieldTable;
    if (found !== null) {
      const c = plain(found['count']);
      const n = typeof c === 'bigint' ? Number(c) : typeof c === 'number' ? c : 0;
      entry = { ...found, count: typed('l', n + 1) };
    } else {
      entry = {
        count: typed('l', 1),
        reason: death.reason,
        queue: death.queue,
        time: typed('T', Math.floor(death.time / 1000)),
        exchange: death.exchange,
        'routing-keys': death.routingKeys,
      };
      if (expiration !== undefined) entry['original-expiration'] = expiration;
    }
    headers['x-death'] = [entry, ...rest];
    if (headers['x-first-death-reason'] === undefined) {
      headers['x-first-death-reason'] = death.reason;
      headers['x-first-death-queue'] = death.queue;
      headers['x-first-death-exchange'] = death.exchange;
    }
    p.headers = headers;
    return propertiesToBuffer(p);
  },

  senderKeys(props) {
    // Headers flag (bit 13): without headers there is nothing to decode.
    if (props.length < 2 || (props[0]! & 0x20) === 0) return undefined;
    const h = readHeaders(props);
    if (h === undefined || (h['CC'] === undefined && h['BCC'] === undefined)) return undefined;
    const list = (v: unknown): string[] => (Array.isArray(v) ? v.map((x) => str(x)).filter((x): x is string => x !== undefined) : []);
    return { cc: list(h['CC']), bcc: list(h['BCC']) };
  },

  withoutHeader(props, name) {
    const h = readHeaders(props, 0, props.length, { typed: true });
    if (h === undefined || !(name in h)) return props;
    delete h[name];
    return replaceHeaders(props, 0, props.length, h);
  },

  withIntHeader(props, name, value) {
    const h = (readHeaders(props, 0, props.length, { typed: true }) ?? {}) as FieldTable;
    h[name] = typed('l', value);
    return replaceHeaders(props, 0, props.length, h);
  },
};
