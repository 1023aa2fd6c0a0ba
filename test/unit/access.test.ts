// Permission checks: the answer for the last resource is remembered, and forgotten as soon as
// permissions change, so a revoked write is refused on the next publish.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Access } from '../../src/broker/access.js';
import { MemoryMetaStore } from '../../src/storage/mod.js';

test('a passed check is remembered until permissions change, and refusals are never remembered', async () => {
  const access = new Access(new MemoryMetaStore(), []);
  await access.addUser('u', 'p');
  await access.setPermissions({ user: 'u', vhost: '/', configure: '^cfg$', write: '^(orders|)$', read: '.*' });
  access.check('u', '/', 'write', 'exchange', 'orders');
  access.check('u', '/', 'write', 'exchange', 'orders');
  assert.throws(() => access.check('u', '/', 'write', 'exchange', 'audit'), /ACCESS_REFUSED|access to exchange 'audit'/);
  assert.throws(() => access.check('u', '/', 'write', 'exchange', ''), /amq\.default/);
  access.check('u', '/', 'write', 'queue', '');
  assert.throws(() => access.check('u', '/', 'write', 'exchange', ''), /amq\.default/, 'same name, other kind');
  access.check('u', '/', 'write', 'exchange', 'orders');
  assert.throws(() => access.check('u', '/', 'configure', 'exchange', 'orders'), /configure access/, 'same name, other permission');
  access.check('u', '/', 'read', 'queue', 'orders');
  assert.throws(() => access.check('u', 'other', 'read', 'queue', 'orders'), /vhost 'other'/, 'same name, other vhost');
  assert.throws(() => access.check('v', '/', 'read', 'queue', 'orders'), /user 'v'/, 'same name, other user');
  access.check('u', '/', 'write', 'exchange', 'orders');
  await access.setPermissions({ user: 'u', vhost: '/', configure: '.*', write: '', read: '.*' });
  assert.throws(() => access.check('u', '/', 'write', 'exchange', 'orders'), /write access to exchange 'orders'/, 'revoked at once');
});
