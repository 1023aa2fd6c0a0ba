// x-delayed-message routes as its x-delayed-type (the delay itself is the broker's), and the
// declare-time checks of the plugin exchange types, with the plugins' reply texts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BrokerError } from '../../src/broker/errors.js';
import {
  EXCHANGE_TYPES,
  Exchange,
  validateExchangeArgs,
  type BindingDefinition,
  type ExchangeType,
  type RoutableMessage,
} from '../../src/broker/exchange/exchange.js';
import { toJsonSafe } from '../../src/broker/json-args.js';

function exchange(type: ExchangeType, args: Record<string, unknown> = {}): Exchange {
  return new Exchange({ vhost: '/', name: 'x', type, durable: true, autoDelete: false, internal: false, args: toJsonSafe(args) as Record<string, unknown> });
}

const b = (queue: string, routingKey: string, args: Record<string, unknown> = {}): BindingDefinition => ({
  vhost: '/',
  source: 'x',
  destinationType: 'queue',
  destination: queue,
  routingKey,
  args,
});

function msg(routingKey: string, headers?: Record<string, unknown>, props: Record<string, unknown> = {}): RoutableMessage {
  return { routingKey, headers: () => headers, property: (n) => props[n] };
}

function routed(ex: Exchange, m: RoutableMessage): string[] {
  const out = new Set<string>();
  ex.route(m, out);
  return [...out].sort();
}

/** The same bindings on a plain exchange of `type` and on x-delayed-message over it route alike. */
function assertRoutesLike(type: ExchangeType, args: Record<string, unknown>, bindings: BindingDefinition[], msgs: RoutableMessage[]): void {
  const plain = exchange(type, args);
  const delayed = exchange('x-delayed-message', { ...args, 'x-delayed-type': type });
  assert.equal(delayed.delayed, true);
  assert.equal(plain.delayed, false);
  assert.equal(delayed.routingType, type);
  for (const x of bindings) {
    plain.bind(x);
    delayed.bind(x);
  }
  for (const m of msgs) assert.deepEqual(routed(delayed, m), routed(plain, m), `${type}: ${m.routingKey}`);
}

test('the new types are known exchange types', () => {
  for (const t of ['x-consistent-hash', 'x-delayed-message', 'x-message-deduplication']) assert.ok((EXCHANGE_TYPES as readonly string[]).includes(t));
});

test('x-delayed-message over direct routes like direct', () => {
  assertRoutesLike('direct', {}, [b('q1', 'a'), b('q2', 'a'), b('q3', 'b'), b('q1', 'a', { other: 1 })], [msg('a'), msg('b'), msg('c'), msg('')]);
  const d = exchange('x-delayed-message', { 'x-delayed-type': 'direct' });
  d.bind(b('q1', 'a'));
  d.bind(b('q1', 'a', { other: 1 }));
  d.unbind(b('q1', 'a'));
  assert.deepEqual(routed(d, msg('a')), ['q:q1'], 'a second binding with other arguments keeps the queue routed');
  d.unbind(b('q1', 'a', { other: 1 }));
  assert.deepEqual(routed(d, msg('a')), []);
});

test('x-delayed-message over fanout routes like fanout', () => {
  assertRoutesLike('fanout', {}, [b('q1', ''), b('q2', 'ignored')], [msg('a'), msg('')]);
  const d = exchange('x-delayed-message', { 'x-delayed-type': 'fanout' });
  d.bind(b('q1', 'k1'));
  d.bind(b('q1', 'k2'));
  d.unbind(b('q1', 'k1'));
  assert.deepEqual(routed(d, msg('z')), ['q:q1']);
  d.unbind(b('q1', 'k2'));
  assert.deepEqual(routed(d, msg('z')), []);
});

test('x-delayed-message over topic routes like topic', () => {
  assertRoutesLike(
    'topic',
    {},
    [b('q1', 'a.*'), b('q2', 'a.#'), b('q3', '#'), b('q4', '*.b.*'), b('q5', 'a.b.c')],
    [msg('a.b'), msg('a'), msg('a.b.c'), msg('x.b.y'), msg(''), msg('a.b.c.d')],
  );
});

test('x-delayed-message over headers routes like headers', () => {
  assertRoutesLike(
    'headers',
    {},
    [b('all', '', { 'x-match': 'all', a: 1, b: 'two' }), b('any', '', { 'x-match': 'any', a: 1, c: true }), b('none', '', {})],
    [msg('', { a: 1, b: 'two' }), msg('', { a: 1 }), msg('', { c: true }), msg('', undefined), msg('', { b: 'two' })],
  );
});

test('x-delayed-message over x-consistent-hash routes like x-consistent-hash, hash arguments included', () => {
  const keys = Array.from({ length: 300 }, (_, i) => msg(`k${i}`, { h: `v${i}` }));
  assertRoutesLike('x-consistent-hash', {}, [b('q1', '1'), b('q2', '2'), b('q3', '1')], keys);
  assertRoutesLike('x-consistent-hash', { 'hash-header': 'h' }, [b('q1', '1'), b('q2', '2')], keys);
  // The inner type's binding rules apply.
  const d = exchange('x-delayed-message', { 'x-delayed-type': 'x-consistent-hash' });
  assert.throws(() => d.bind(b('q1', 'abc')), (e: unknown) => e instanceof BrokerError && e.kind === 'precondition-failed');
});

test('x-delayed-message over x-message-deduplication routes like fanout and needs the cache', () => {
  assertRoutesLike('x-message-deduplication', { 'x-cache-size': 10 }, [b('q1', 'a'), b('q2', 'b')], [msg('zzz')]);
  assert.deepEqual(exchange('x-delayed-message', { 'x-delayed-type': 'x-message-deduplication', 'x-cache-size': 10 }).dedup, { size: 10, ttlMs: null });
});

test('dedup: the deduplication type and the x-message-deduplication extension expose their cache', () => {
  assert.deepEqual(exchange('x-message-deduplication', { 'x-cache-size': 100 }).dedup, { size: 100, ttlMs: null });
  assert.deepEqual(exchange('x-message-deduplication', { 'x-cache-size': 100n, 'x-cache-ttl': { type: 'l', value: 5000 } }).dedup, { size: 100, ttlMs: 5000 });
  assert.deepEqual(exchange('x-message-deduplication', { 'x-cache-size': '7' }).dedup, { size: 7, ttlMs: null });
  assert.deepEqual(exchange('topic', { 'x-message-deduplication': true, 'x-cache-size': 3, 'x-cache-ttl': 10 }).dedup, { size: 3, ttlMs: 10 });
  assert.equal(exchange('topic', { 'x-message-deduplication': false, 'x-cache-size': 3 }).dedup, null);
  assert.equal(exchange('direct').dedup, null);
  // It routes as fanout.
  const d = exchange('x-message-deduplication', { 'x-cache-size': 100 });
  d.bind(b('q1', 'a'));
  d.bind(b('q2', 'b'));
  assert.deepEqual(routed(d, msg('anything')), ['q:q1', 'q:q2']);
});

function assertFails(type: string, args: Record<string, unknown>, kind: string, text: RegExp): void {
  assert.throws(
    () => validateExchangeArgs(type, args, 'x', '/'),
    (e: unknown) => e instanceof BrokerError && e.kind === kind && text.test(e.message),
    `${type} ${JSON.stringify(toJsonSafe(args))}`,
  );
}

test('x-delayed-type validation, as the delayed-message plugin answers', () => {
  for (const t of ['direct', 'fanout', 'topic', 'headers', 'x-consistent-hash']) validateExchangeArgs('x-delayed-message', { 'x-delayed-type': t }, 'x', '/');
  validateExchangeArgs('x-delayed-message', { 'x-delayed-type': Buffer.from('topic') }, 'x', '/');
  const existing = /^PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type$/;
  assertFails('x-delayed-message', {}, 'precondition-failed', existing);
  assertFails('x-delayed-message', { 'x-delayed-type': 5 }, 'precondition-failed', existing);
  assertFails('x-delayed-message', { 'x-delayed-type': 'x-delayed-message' }, 'precondition-failed', /^PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'$/);
  // An unknown type name fails in rabbit_exchange:check_type: 503, a connection error.
  assert.throws(
    () => validateExchangeArgs('x-delayed-message', { 'x-delayed-type': 'nope' }, 'x', '/'),
    (e: unknown) => e instanceof BrokerError && e.kind === 'command-invalid' && e.scope === 'connection' && e.message === "COMMAND_INVALID - unknown exchange type 'nope'",
  );
  // The inner type's own checks run on the same arguments.
  assertFails('x-delayed-message', { 'x-delayed-type': 'x-consistent-hash', 'hash-header': 'a', 'hash-property': 'message_id' }, 'precondition-failed', /mutually exclusive/);
  assertFails('x-delayed-message', { 'x-delayed-type': 'x-message-deduplication' }, 'precondition-failed', /'x-cache-size'/);
});

test('x-message-deduplication validation, as the deduplication plugin answers', () => {
  validateExchangeArgs('x-message-deduplication', { 'x-cache-size': 1 }, 'x', '/');
  validateExchangeArgs('x-message-deduplication', { 'x-cache-size': '100', 'x-cache-ttl': 1000n, 'x-cache-persistence': 'disk' }, 'x', '/');
  validateExchangeArgs('x-message-deduplication', { 'x-cache-size': 5, 'x-cache-persistence': 'memory' }, 'x', '/');
  const size = /^PRECONDITION_FAILED - Missing or invalid argument, 'x-cache-size' must be an integer greater than 0$/;
  assertFails('x-message-deduplication', {}, 'precondition-failed', size);
  assertFails('x-message-deduplication', { 'x-cache-size': 0 }, 'precondition-failed', size);
  assertFails('x-message-deduplication', { 'x-cache-size': -3 }, 'precondition-failed', size);
  assertFails('x-message-deduplication', { 'x-cache-size': 1.5 }, 'precondition-failed', size);
  assertFails('x-message-deduplication', { 'x-cache-size': 'ten' }, 'precondition-failed', size);
  const ttl = /^PRECONDITION_FAILED - Invalid argument, 'x-cache-ttl' must be an integer greater than 0$/;
  assertFails('x-message-deduplication', { 'x-cache-size': 1, 'x-cache-ttl': 0 }, 'precondition-failed', ttl);
  assertFails('x-message-deduplication', { 'x-cache-size': 1, 'x-cache-ttl': 'soon' }, 'precondition-failed', ttl);
  assertFails('x-message-deduplication', { 'x-cache-size': 1, 'x-cache-persistence': 'tape' }, 'precondition-failed', /^PRECONDITION_FAILED - Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'$/);
  // The Sluice extension on other types.
  validateExchangeArgs('direct', { 'x-message-deduplication': true, 'x-cache-size': 10 }, 'x', '/');
  validateExchangeArgs('direct', { 'x-message-deduplication': false }, 'x', '/');
  assertFails('direct', { 'x-message-deduplication': true }, 'precondition-failed', size);
  assertFails('fanout', { 'x-message-deduplication': 'yes', 'x-cache-size': 10 }, 'precondition-failed', /invalid type 'longstr' for arg 'x-message-deduplication' in exchange 'x' in vhost '\/'/);
  // Types without rules of their own accept anything else.
  validateExchangeArgs('topic', { whatever: 1 }, 'x', '/');
});
