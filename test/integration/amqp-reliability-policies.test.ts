/**
 * Policies: queue settings (message-ttl, dead-letter-exchange, max-length, overflow) applied by
 * name pattern rather than by declare arguments. Sluice takes them from its configuration
 * (startBroker's `policies` option); the same expectations were checked against RabbitMQ 3.10.8
 * with the policies set through `rabbitmqctl set_policy` (SLUICE_TEST_RABBITMQCTL, see
 * test/helpers/reliability.ts). Against an external broker without that, the tests skip.
 *
 * RabbitMQ facts these tests pin down:
 * - Exactly one policy applies to a queue: the matching one with the highest priority. Policies
 *   are not merged (a lower-priority policy's keys do not fill in).
 * - A queue's own arguments and its policy combine per key: for dead-letter-exchange,
 *   dead-letter-routing-key and overflow the queue argument wins; for the numeric limits
 *   (message-ttl, expires, max-length, max-length-bytes) the LOWER of the two applies, so a
 *   queue argument can tighten a policy's limit but not loosen it.
 * - The pattern is a regular expression over the queue name.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  assertNotEarly,
  assertXDeath,
  consumeTimed,
  deadLetterSink,
  messageCount,
  now,
  publishConfirmed,
  Scope,
  sleep,
  suiteTarget,
  waitFor,
  waitForCount,
  type PolicyDef,
  type Timed,
} from '../helpers/reliability.js';
import { channel, closeQuietly, connect } from '../helpers/amqp-client.js';

const RUN = randomBytes(3).toString('hex');
const PREFIX = `pol-${RUN}`;
/** The dead-letter exchange the policies name (a fanout declared in before()). */
const POLICY_DLX = `${PREFIX}-dlx`;
const POLICY_TTL = 200;

const policy = (name: string, pattern: string, priority: number, definition: Record<string, unknown>): PolicyDef => ({
  vhost: '/',
  name: `${PREFIX}-${name}`,
  pattern,
  'apply-to': 'queues',
  priority,
  definition,
});

const POLICIES: PolicyDef[] = [
  // Everything under pol-<run>. gets a TTL and a dead-letter exchange...
  policy('ttl', `^${PREFIX}\\.`, 0, { 'message-ttl': POLICY_TTL, 'dead-letter-exchange': POLICY_DLX }),
  // ...except what a higher-priority policy matches: these take only their own keys.
  policy('long', `^${PREFIX}\\.long\\.`, 1, { 'message-ttl': 60000, 'dead-letter-exchange': POLICY_DLX }),
  policy('hi', `^${PREFIX}\\.hi\\.`, 5, { 'max-length': 2, overflow: 'reject-publish' }),
  policy('len', `^${PREFIX}\\.len\\.`, 5, { 'max-length': 2, 'dead-letter-exchange': POLICY_DLX }),
];

const byFirstDeathQueue = (got: Timed[], q: string): Timed[] => got.filter((d) => d.m.properties.headers?.['x-first-death-queue'] === q);

describe('reliability: policies', () => {
  const target = suiteTarget(
    { policies: POLICIES },
    {
      async setup(target) {
        if (!target.policiesApplied) return;
        const c = await connect(target.url);
        const ch = await channel(c);
        await ch.assertExchange(POLICY_DLX, 'fanout', { durable: false });
        await closeQuietly(c);
      },
      async teardown(target) {
        if (!target.policiesApplied) return;
        const c = await connect(target.url).catch(() => undefined);
        if (c) {
          const ch = await channel(c);
          await ch.deleteExchange(POLICY_DLX).catch(() => undefined);
          await closeQuietly(c);
        }
      },
    },
  );

  /** Skips when the policies could not be applied (external broker without rabbitmqctl). */
  const skip = (t: { skip(msg?: string): void }): boolean => {
    if (target.policiesApplied) return false;
    t.skip('policies need Sluice, or SLUICE_TEST_RABBITMQCTL against an external RabbitMQ');
    return true;
  };

  /** A queue bound to the policies' dead-letter exchange, consumed into an array. */
  const policySink = async (s: Scope): Promise<Timed[]> => {
    const q = await s.queue(`${PREFIX}-sink`);
    await s.ch.bindQueue(q, POLICY_DLX, '');
    return (await consumeTimed(await s.channel(), q)).got;
  };

  test('a queue matching the pattern gets the policy\'s message TTL and dead-letter exchange', async (t) => {
    if (skip(t)) return;
    const s = await Scope.open(t, target);
    const sink = await policySink(s);
    const q = await s.queue(`${PREFIX}.x`);
    const wall = Date.now();
    const t0 = now();
    s.ch.sendToQueue(q, Buffer.from('expires by policy'));
    await s.ch.waitForConfirms();
    await waitFor(() => byFirstDeathQueue(sink, q).length === 1, 5000, 'dead-lettered through the policy');
    const d = byFirstDeathQueue(sink, q)[0]!;
    assertNotEarly(d.at, t0, POLICY_TTL, 'policy TTL');
    assertXDeath(d.m, [{ count: 1, reason: 'expired', queue: q, exchange: '', 'routing-keys': [q] }], wall);
    assert.equal(await messageCount(s.ch, q), 0);
  });

  test('a queue not matching the pattern is unaffected', async (t) => {
    if (skip(t)) return;
    const s = await Scope.open(t, target);
    const sink = await policySink(s);
    const matching = await s.queue(`${PREFIX}.control`);
    const other = await s.queue(`x${PREFIX}.x`); // the pattern is anchored: ^pol-...
    s.ch.sendToQueue(matching, Buffer.from('goes'));
    s.ch.sendToQueue(other, Buffer.from('stays'));
    await s.ch.waitForConfirms();
    await waitFor(() => byFirstDeathQueue(sink, matching).length === 1, 5000, 'the matching queue\'s message expires');
    await sleep(POLICY_TTL);
    assert.equal(await messageCount(s.ch, other), 1);
    assert.equal(byFirstDeathQueue(sink, other).length, 0);
  });

  test('the queue\'s own lower x-message-ttl applies instead of the policy\'s', async (t) => {
    if (skip(t)) return;
    const s = await Scope.open(t, target);
    const sink = await policySink(s);
    // Under the 'long' policy (60 s): the queue's own 100 ms wins.
    const own = await s.queue(`${PREFIX}.long.own`, { arguments: { 'x-message-ttl': 100 } });
    const plain = await s.queue(`${PREFIX}.long.plain`);
    s.ch.sendToQueue(own, Buffer.from('own ttl'));
    s.ch.sendToQueue(plain, Buffer.from('policy ttl (60 s)'));
    await s.ch.waitForConfirms();
    await waitFor(() => byFirstDeathQueue(sink, own).length === 1, 5000, 'expired by its own TTL, dead-lettered by the policy');
    await sleep(POLICY_TTL * 2);
    assert.equal(await messageCount(s.ch, plain), 1, 'the higher-priority policy (60 s) applies, not the 200 ms one');
  });

  test('numeric limits: a queue x-message-ttl higher than the policy\'s does not loosen it (the lower applies)', async (t) => {
    if (skip(t)) return;
    const s = await Scope.open(t, target);
    const sink = await policySink(s);
    const q = await s.queue(`${PREFIX}.own60k`, { arguments: { 'x-message-ttl': 60000 } });
    const t0 = now();
    s.ch.sendToQueue(q, Buffer.from('x'));
    await s.ch.waitForConfirms();
    await waitFor(() => byFirstDeathQueue(sink, q).length === 1, 5000, 'expired after the policy TTL');
    assertNotEarly(byFirstDeathQueue(sink, q)[0]!.at, t0, POLICY_TTL, 'policy TTL');
  });

  test('the queue\'s own x-dead-letter-exchange wins over the policy\'s', async (t) => {
    if (skip(t)) return;
    const s = await Scope.open(t, target);
    const policyGot = await policySink(s);
    const mine = await deadLetterSink(s, `${PREFIX}-own-dlx`);
    const q = await s.queue(`${PREFIX}.owndlx`, { arguments: { 'x-dead-letter-exchange': mine.exchange } });
    s.ch.sendToQueue(q, Buffer.from('x'));
    await s.ch.waitForConfirms();
    await waitFor(() => mine.got.length === 1, 5000, 'dead-lettered to the queue\'s own exchange');
    await sleep(100);
    assert.equal(byFirstDeathQueue(policyGot, q).length, 0);
  });

  test('of two matching policies only the higher-priority one applies (max-length + reject-publish, and no TTL)', async (t) => {
    if (skip(t)) return;
    const s = await Scope.open(t, target);
    const q = await s.queue(`${PREFIX}.hi`);
    const results = [];
    for (const b of ['m1', 'm2', 'm3']) results.push(await publishConfirmed(s.ch, '', q, b));
    assert.deepEqual(results, [true, true, false]);
    await sleep(POLICY_TTL * 3);
    assert.equal(await messageCount(s.ch, q), 2, 'the priority-0 policy\'s TTL is not merged in');
  });

  test('max-length through a policy: drop-head dead-letters the oldest with reason maxlen', async (t) => {
    if (skip(t)) return;
    const s = await Scope.open(t, target);
    const sink = await policySink(s);
    const q = await s.queue(`${PREFIX}.len`);
    const wall = Date.now();
    for (const b of ['m1', 'm2', 'm3']) s.ch.sendToQueue(q, Buffer.from(b));
    await s.ch.waitForConfirms();
    await waitFor(() => byFirstDeathQueue(sink, q).length === 1, 5000, 'the oldest dead-lettered');
    const d = byFirstDeathQueue(sink, q)[0]!.m;
    assert.equal(d.content.toString(), 'm1');
    assertXDeath(d, [{ count: 1, reason: 'maxlen', queue: q, exchange: '', 'routing-keys': [q] }], wall);
    await waitForCount(s.ch, q, 2);
  });

  test('a queue\'s own x-max-length lower than the policy\'s applies', async (t) => {
    if (skip(t)) return;
    const s = await Scope.open(t, target);
    const q = await s.queue(`${PREFIX}.hi.own`, { arguments: { 'x-max-length': 1 } });
    assert.equal(await publishConfirmed(s.ch, '', q, 'm1'), true);
    assert.equal(await publishConfirmed(s.ch, '', q, 'm2'), false, 'own limit 1, overflow from the policy');
  });
});
