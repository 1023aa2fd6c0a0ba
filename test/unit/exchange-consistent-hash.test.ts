// x-consistent-hash: one destination per message, picked by a ring that depends only on the
// bindings (so the same keys route the same way after bindings are re-added in any order),
// weights proportional, hash-header / hash-property, and the plugin's validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BrokerError } from '../../src/broker/errors.js';
import { Exchange, validateExchangeArgs, type BindingDefinition, type RoutableMessage } from '../../src/broker/exchange/exchange.js';
import { hash32, hash32Bytes } from '../../src/broker/exchange/hash32.js';

function chx(args: Record<string, unknown> = {}, name = 'chx'): Exchange {
  return new Exchange({ vhost: '/', name, type: 'x-consistent-hash', durable: true, autoDelete: false, internal: false, args });
}

function binding(queue: string, weight: string, destinationType: 'queue' | 'exchange' = 'queue', args: Record<string, unknown> = {}): BindingDefinition {
  return { vhost: '/', source: 'chx', destinationType, destination: queue, routingKey: weight, args };
}

function msg(routingKey: string, headers?: Record<string, unknown>, props: Record<string, unknown> = {}): RoutableMessage {
  return { routingKey, headers: () => headers, property: (n) => props[n] };
}

function routeOne(ex: Exchange, m: RoutableMessage): string | undefined {
  const out = new Set<string>();
  ex.route(m, out);
  assert.ok(out.size <= 1, `routed to ${out.size} destinations`);
  return [...out][0];
}

function counts(ex: Exchange, n: number, make: (i: number) => RoutableMessage = (i) => msg(`key-${i}`)): Map<string, number> {
  const c = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const d = routeOne(ex, make(i));
    assert.ok(d !== undefined, 'every message routes somewhere');
    c.set(d, (c.get(d) ?? 0) + 1);
  }
  return c;
}

function assertPrecondition(fn: () => void, text: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof BrokerError && e.kind === 'precondition-failed' && e.scope === 'channel' && text.test(e.message));
}

test('hash32 is FNV-1a + fmix32 over UTF-8, stable and equal for strings and their bytes', () => {
  for (const s of ['', 'a', 'q:orders\u00000', 'héllo', '日本語', 'emoji 😀', 'lone \ud800 surrogate']) {
    assert.equal(hash32(s), hash32Bytes(Buffer.from(s, 'utf8')), JSON.stringify(s));
  }
  // Pinned values (checked against an independent FNV-1a + fmix32): changing the function
  // would move every routing key to another queue after an upgrade.
  assert.deepEqual(
    ['', 'a', 'q:q1\u00000', 'routing.key'].map(hash32),
    [0xab3e7c0b | 0, 0x1a80b1b3, 0x2224a3e2, 0x3eaba7c2],
  );
});

test('the same routing key always goes to the same single destination', () => {
  const ex = chx();
  for (const q of ['q1', 'q2', 'q3', 'q4']) ex.bind(binding(q, '1'));
  for (let i = 0; i < 1000; i++) {
    const k = `k${i}`;
    const first = routeOne(ex, msg(k));
    assert.ok(first !== undefined);
    assert.equal(routeOne(ex, msg(k)), first);
  }
});

test('4 equal-weight queues each get 15-35% of 10,000 keys', () => {
  for (const weight of ['1', '5']) {
    const ex = chx();
    for (const q of ['q1', 'q2', 'q3', 'q4']) ex.bind(binding(q, weight));
    const c = counts(ex, 10_000);
    assert.equal(c.size, 4);
    for (const [q, n] of c) assert.ok(n >= 1500 && n <= 3500, `weight ${weight}: ${q} got ${n} of 10000`);
  }
});

test('weights 1:3 split about 25/75; bindings to one destination add their weights', () => {
  const ex = chx();
  ex.bind(binding('light', '1'));
  ex.bind(binding('heavy', '3'));
  let c = counts(ex, 20_000);
  let share = (c.get('q:light') ?? 0) / 20_000;
  assert.ok(share > 0.18 && share < 0.32, `light got ${share}`);

  // Two bindings of weight 1 and 2 (different keys) weigh 3 together.
  const ex2 = chx();
  ex2.bind(binding('light', '1'));
  ex2.bind(binding('heavy', '1'));
  ex2.bind(binding('heavy', '2'));
  c = counts(ex2, 20_000);
  share = (c.get('q:light') ?? 0) / 20_000;
  assert.ok(share > 0.18 && share < 0.32, `light got ${share}`);
  // And the ring equals the one of a single weight-3 binding.
  for (let i = 0; i < 2000; i++) assert.equal(routeOne(ex2, msg(`key-${i}`)), routeOne(ex, msg(`key-${i}`)));
});

test('the ring depends only on the bindings: re-adding them in another order routes every key the same', () => {
  const qs = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
  const weights = ['1', '2', '3', '1', '2', '5', '1'];
  const ex1 = chx();
  qs.forEach((q, i) => ex1.bind(binding(q, weights[i]!)));
  const ex2 = chx();
  for (const i of [6, 3, 0, 5, 2, 4, 1]) ex2.bind(binding(qs[i]!, weights[i]!));
  // A third one that had other bindings and lost them again.
  const ex3 = chx();
  ex3.bind(binding('zz', '4'));
  for (const i of [1, 0, 2, 3, 4, 5, 6]) ex3.bind(binding(qs[i]!, weights[i]!));
  assert.equal(ex3.unbind(binding('zz', '4')), true);
  for (let i = 0; i < 5000; i++) {
    const m = msg(`order-${i}`);
    const d = routeOne(ex1, m);
    assert.equal(routeOne(ex2, m), d);
    assert.equal(routeOne(ex3, m), d);
  }
});

test('adding a destination moves only the keys that now land on it', () => {
  const ex = chx();
  for (const q of ['q1', 'q2', 'q3', 'q4']) ex.bind(binding(q, '1'));
  const before = Array.from({ length: 5000 }, (_, i) => routeOne(ex, msg(`k${i}`)));
  ex.bind(binding('q5', '1'));
  let moved = 0;
  for (let i = 0; i < 5000; i++) {
    const now = routeOne(ex, msg(`k${i}`));
    if (now !== before[i]) {
      moved++;
      assert.equal(now, 'q:q5', 'a key moves only to the new destination');
    }
  }
  assert.ok(moved > 500 && moved < 1600, `${moved} of 5000 keys moved`);
});

test('unbinding removes the destination; with no bindings nothing routes', () => {
  const ex = chx();
  ex.bind(binding('q1', '1'));
  ex.bind(binding('q2', '2'));
  assert.equal(ex.unbind(binding('q2', '2')), true);
  for (let i = 0; i < 200; i++) assert.equal(routeOne(ex, msg(`k${i}`)), 'q:q1');
  ex.unbind(binding('q1', '1'));
  assert.equal(routeOne(ex, msg('k')), undefined);
  // Unbinding what is not bound changes nothing.
  assert.equal(ex.unbind(binding('q1', '1')), false);
});

test('exchange-to-exchange destinations take part in the ring', () => {
  const ex = chx();
  ex.bind(binding('downstream', '1', 'exchange'));
  ex.bind(binding('q1', '1'));
  const c = counts(ex, 4000);
  assert.deepEqual([...c.keys()].sort(), ['e:downstream', 'q:q1']);
});

test('hash-header hashes the named header instead of the routing key', () => {
  const ex = chx({ 'hash-header': 'hash-on' });
  for (const q of ['q1', 'q2', 'q3', 'q4']) ex.bind(binding(q, '1'));
  // The routing key no longer matters; the header does.
  const c = counts(ex, 8000, (i) => msg('same-key', { 'hash-on': `v${i}` }));
  assert.equal(c.size, 4);
  for (const [, n] of c) assert.ok(n > 1200 && n < 2800);
  assert.equal(routeOne(ex, msg('x', { 'hash-on': 'v1' })), routeOne(ex, msg('y', { 'hash-on': 'v1' })));
  // Numbers hash by their decimal text, like the same value sent as a string or a long.
  assert.equal(routeOne(ex, msg('x', { 'hash-on': 42 })), routeOne(ex, msg('x', { 'hash-on': '42' })));
  assert.equal(routeOne(ex, msg('x', { 'hash-on': 42n })), routeOne(ex, msg('x', { 'hash-on': '42' })));
  assert.equal(routeOne(ex, msg('x', { 'hash-on': Buffer.from('abc') })), routeOne(ex, msg('x', { 'hash-on': 'abc' })));
  // Without the header (or without headers at all), the plugin still routes, all to one queue.
  const missing = new Set<string | undefined>();
  for (let i = 0; i < 100; i++) missing.add(routeOne(ex, msg(`k${i}`, i % 2 === 0 ? {} : undefined)));
  assert.equal(missing.size, 1);
  assert.ok([...missing][0] !== undefined);
});

test('hash-property hashes message_id, correlation_id or timestamp', () => {
  for (const property of ['message_id', 'correlation_id', 'timestamp']) {
    const ex = chx({ 'hash-property': property });
    for (const q of ['q1', 'q2', 'q3', 'q4']) ex.bind(binding(q, '1'));
    const value = (i: number): unknown => (property === 'timestamp' ? 1_700_000_000 + i : `id-${i}`);
    const c = counts(ex, 8000, (i) => msg('same-key', undefined, { [property]: value(i) }));
    assert.equal(c.size, 4, property);
    for (const [, n] of c) assert.ok(n > 1200 && n < 2800, `${property}: ${n}`);
    assert.equal(routeOne(ex, msg('a', undefined, { [property]: value(7) })), routeOne(ex, msg('b', undefined, { [property]: value(7) })));
    const missing = new Set<string | undefined>();
    for (let i = 0; i < 50; i++) missing.add(routeOne(ex, msg(`k${i}`)));
    assert.equal(missing.size, 1, `${property}: messages without it all go to one destination`);
  }
});

test('a binding key that is not a positive integer is refused with 406, as the plugin words it', () => {
  const ex = chx();
  assertPrecondition(() => ex.bind(binding('q1', 'not-a-number')), /^PRECONDITION_FAILED - The binding key must be an integer: <<"not-a-number">>$/);
  assertPrecondition(() => ex.bind(binding('q1', '1.5')), /must be an integer/);
  assertPrecondition(() => ex.bind(binding('q1', '')), /must be an integer/);
  assertPrecondition(() => ex.bind(binding('q1', '0')), /^PRECONDITION_FAILED - The binding key must be greater than 0$/);
  assertPrecondition(() => ex.bind(binding('q1', '-1')), /must be greater than 0/);
  assert.equal(ex.bindings.size, 0, 'a refused binding is not added');
  // Erlang's list_to_integer accepts a sign and leading zeros.
  assert.equal(ex.bind(binding('q1', '+2')), true);
  assert.equal(ex.bind(binding('q2', '007')), true);
  // Sluice bounds the ring: the weights of one exchange add up to at most 10,000.
  assertPrecondition(() => ex.bind(binding('q3', '9999')), /must be at most 9991/);
  assert.equal(ex.bind(binding('q3', '9991')), true);
  // An identical binding again is a no-op, not a refusal.
  assert.equal(ex.bind(binding('q3', '9991')), false);
});

test('declare validation: hash-header and hash-property are exclusive; only three properties', () => {
  const v = (args: Record<string, unknown>): void => validateExchangeArgs('x-consistent-hash', args, 'chx', '/');
  v({});
  v({ 'hash-header': 'h' });
  v({ 'hash-property': 'message_id' });
  v({ 'hash-property': { type: 'S', value: 'timestamp' } });
  assertPrecondition(() => v({ 'hash-header': 'h', 'hash-property': 'message_id' }), /^PRECONDITION_FAILED - hash-header and hash-property are mutually exclusive$/);
  assertPrecondition(() => v({ 'hash-property': 'app_id' }), /^PRECONDITION_FAILED - Unsupported property: app_id$/);
  assertPrecondition(() => v({ 'hash-header': 5 }), /invalid type 'signedint' for arg 'hash-header' in exchange 'chx' in vhost '\/'/);
});

test('routing allocates nothing once the ring is built', () => {
  const ex = chx();
  for (let q = 0; q < 50; q++) ex.bind(binding(`q${q}`, '3'));
  const msgs = Array.from({ length: 1000 }, (_, i) => msg(`key-${i}`));
  const out = new Set<string>();
  // Builds the ring, and warms route() up so that what is measured is optimized code.
  for (let r = 0; r < 50; r++) for (const m of msgs) ex.route(m, out);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return; // run with --expose-gc (npm test does) for this check
  gc();
  const before = process.memoryUsage().heapUsed;
  // `out` keeps its members (this measures route(), not Set.clear()). Any object per route
  // (a boxed hash is 16 bytes) would show as >= 16 MB over a million routes; compiling the
  // loop itself costs a few hundred KB once.
  for (let i = 0; i < 1_000_000; i++) ex.route(msgs[i % 1000]!, out);
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 4 * 1024 * 1024, `heap grew ${grown} bytes over 1,000,000 routes`);
});
