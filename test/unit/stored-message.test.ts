// The stored message header keeps the last names' bytes: whatever order names come in, each
// message reads back the exchange and routing key it was published with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeStoredMessage, StoredMessageView } from '../../src/broker/message.js';

test('encodeStoredMessage round-trips names, props and body whether or not they repeat', () => {
  const v = new StoredMessageView();
  const long = 'k'.repeat(255);
  const cases: Array<[string, string]> = [
    ['ex', 'a'],
    ['ex', 'a'],
    ['ex', 'b'],
    ['', 'a'],
    ['ex', 'a'],
    ['é-exchange', 'ключ'],
    ['é-exchange', 'ключ'],
    [long.slice(0, 200), long],
    [long.slice(0, 200), long],
    ['', ''],
    ['', ''],
  ];
  let i = 0;
  for (const [ex, rk] of cases) {
    const props = Buffer.from([0x80, 0x00, i]);
    const body = Buffer.from(`body ${i}`);
    // Equal strings that are different objects must hit the same path as identical ones.
    const payload = encodeStoredMessage(String(ex).concat(''), rk, props, body);
    v.parse(payload);
    assert.equal(v.exchange, ex, `case ${i}`);
    assert.equal(v.routingKey, rk, `case ${i}`);
    assert.ok(v.props.equals(props));
    assert.ok(v.body.equals(body));
    i++;
  }
});
