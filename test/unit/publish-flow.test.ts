// Publish flow control: the delay runner holds publishers exactly while due entries wait to
// fire, and lets them go again once it has caught up, also between the batches of a backlog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PublishFlow, type FlowListener } from '../../src/broker/publish-flow.js';
import { ScheduleRunner } from '../../src/broker/schedule/schedule-runner.js';
import { MemoryScheduleStore } from '../../src/storage/memory/memory-schedule-store.js';
import { ManualClock } from '../../src/common/clock.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Listener implements FlowListener {
  released = 0;
  flowReleased(): void {
    this.released++;
  }
}

test('PublishFlow: held from the due time (after a publishing slice) until the work reports its next due time; waiters are released once', () => {
  const clock = new ManualClock();
  const flow = new PublishFlow(() => clock.now());
  assert.equal(flow.held, false, 'nothing due: not held');
  flow.nextWorkAt(clock.now() + 60_000);
  assert.equal(flow.held, false, 'due later: not held yet');
  flow.nextWorkAt(clock.now() - 1);
  assert.equal(flow.held, false, 'due already: publishers still get their slice first');
  clock.advance(1);
  assert.equal(flow.held, false, 'the slice is 2 ms');
  clock.advance(1);
  assert.equal(flow.held, true, 'slice over, work due: held');
  const a = new Listener();
  const b = new Listener();
  flow.waitForRelease(a);
  flow.waitForRelease(b);
  assert.equal(flow.pauses, 2);
  flow.nextWorkAt(-Infinity);
  assert.equal(a.released + b.released, 0, 'still running: nobody released');
  flow.nextWorkAt(Infinity);
  assert.deepEqual([a.released, b.released], [1, 1]);
  flow.nextWorkAt(-Infinity);
  flow.nextWorkAt(Infinity);
  assert.deepEqual([a.released, b.released], [1, 1], 'a release is delivered once per wait');
  const c = new Listener();
  flow.waitForRelease(c);
  assert.equal(c.released, 1, 'not held: released at once');
});

test('ScheduleRunner: publishers are held while entries fire, and not before they are due or after', async () => {
  // The runner's timer is real, its clock is not: however slowly the machine runs, nothing is
  // due until the test moves the clock.
  const clock = new ManualClock();
  const now = (): number => clock.now();
  const flow = new PublishFlow(now);
  const heldAtFire: boolean[] = [];
  const runner = new ScheduleRunner(new MemoryScheduleStore('t'), () => heldAtFire.push(flow.held), now);
  runner.flow = flow;
  runner.start();
  assert.equal(flow.held, false, 'empty schedule');
  runner.add(clock.now() + 80, 'g', Buffer.from('a'));
  runner.add(clock.now() + 80, 'g', Buffer.from('b'));
  assert.equal(flow.held, false, 'entries due in 80 ms: not held yet');
  clock.advance(79);
  await sleep(200); // the runner's timer comes and goes; nothing is due by its clock
  assert.equal(flow.held, false, '1 ms before due: not held');
  assert.deepEqual(heldAtFire, [], 'nothing fired early');
  clock.advance(1);
  const deadline = Date.now() + 20_000;
  while (heldAtFire.length < 2 && Date.now() < deadline) await sleep(10);
  assert.deepEqual(heldAtFire, [true, true], 'held while firing');
  assert.equal(flow.held, false, 'caught up: released');
  await runner.close();
});

test('ScheduleRunner: a backlog of due entries lets publishers in between batches', async () => {
  const flow = new PublishFlow();
  let fired = 0;
  let releasedMidway = 0;
  const waiter: FlowListener = {
    flowReleased() {
      if (fired > 0 && fired < 5000) releasedMidway++;
      // Wait again, as a publisher that is held once more would.
      if (fired < 5000) setImmediate(() => flow.held && flow.waitForRelease(waiter));
    },
  };
  const runner = new ScheduleRunner(new MemoryScheduleStore('t'), () => fired++);
  runner.flow = flow;
  const past = Date.now() - 10_000;
  for (let i = 0; i < 5000; i++) runner.add(past + i, 'g', Buffer.from('x'));
  flow.nextWorkAt(-Infinity);
  flow.waitForRelease(waiter);
  runner.start();
  const deadline = Date.now() + 30_000;
  while (fired < 5000 && Date.now() < deadline) await sleep(5);
  assert.equal(fired, 5000);
  assert.ok(releasedMidway >= 1, `publishers got a turn between batches (${releasedMidway})`);
  assert.equal(flow.held, false);
  await runner.close();
});
