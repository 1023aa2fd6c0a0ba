/**
 * handshake_timeout (RabbitMQ: 10 s): sockets that never send the protocol header, or stop
 * after it, are closed once the timeout has passed, and not before; a client that completed the
 * handshake is not touched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import amqp from 'amqplib';
import { startBroker } from '../../src/index.js';
import { removeDir, tempDataDir, waitFor } from '../helpers/test-broker.js';

test('connections that do not finish the handshake are closed after handshakeTimeout; open ones stay', async () => {
  const dataDir = tempDataDir();
  const TIMEOUT = 1500;
  const b = await startBroker({ dataDir, amqpPort: 0, host: '127.0.0.1', quiet: true, handshakeTimeout: TIMEOUT });
  try {
    const good = await amqp.connect(b.amqpUrl);
    const silent: Array<{ s: Socket; at: number; closedAt: number }> = [];
    for (let i = 0; i < 50; i++) {
      const s = connect(b.amqpPort, '127.0.0.1');
      await once(s, 'connect');
      const rec = { s, at: Date.now(), closedAt: 0 };
      s.on('close', () => (rec.closedAt = Date.now()));
      s.on('error', () => undefined);
      s.on('data', () => undefined);
      if (i % 5 === 0) s.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')); // header, then silence
      silent.push(rec);
    }
    await waitFor(() => silent.every((r) => r.closedAt > 0), 30_000, 'every stalled socket to be closed');
    for (const r of silent) assert.ok(r.closedAt - r.at >= TIMEOUT - 50, `closed after ${r.closedAt - r.at} ms, not before the timeout`);
    const ch = await good.createChannel();
    await ch.assertQueue('', { exclusive: true });
    await good.close();
  } finally {
    await b.close();
    removeDir(dataDir);
  }
});
