/**
 * The `sluice start` process: SIGTERM closes client connections with 320 CONNECTION_FORCED and
 * exits cleanly (the next start finds a clean data directory), the data directory is locked
 * against a second broker, and environment variables configure it like flags.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { removeDir, spawnCliBroker, tempDataDir } from '../helpers/test-broker.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

describe('sluice start', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach(removeDir));

  test('SIGTERM closes connections with 320 CONNECTION_FORCED and exits 0; persistent data survives', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const proc = await spawnCliBroker(dir, CLI);
    const conn = await amqp.connect(proc.url);
    const closed = new Promise<Error | undefined>((resolve) => {
      conn.on('error', (e: Error) => resolve(e));
      conn.on('close', (e?: Error) => resolve(e));
    });
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue('kept', { durable: true });
    ch.sendToQueue('kept', Buffer.from('still here'), { persistent: true });
    await ch.waitForConfirms();
    proc.child.kill('SIGTERM');
    const err = (await closed) as (Error & { code?: number }) | undefined;
    assert.ok(err, 'the connection was closed with an error');
    assert.equal(err.code, 320);
    assert.match(err.message, /CONNECTION_FORCED/);
    assert.equal(await proc.exited, 0);

    const again = await spawnCliBroker(dir, CLI);
    const c2 = await amqp.connect(again.url);
    const ch2 = await c2.createChannel();
    const m = await ch2.get('kept', { noAck: true });
    assert.ok(m !== false);
    assert.equal(m.content.toString(), 'still here');
    await c2.close();
    again.child.kill('SIGTERM');
    assert.equal(await again.exited, 0);
  });

  test('a second broker on the same data directory is refused', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const first = await spawnCliBroker(dir, CLI);
    const second = spawn(process.execPath, [CLI, 'start', '--data-dir', dir, '--amqp-port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    second.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => second.once('exit', resolve));
    assert.notEqual(code, 0);
    assert.match(stderr, /in use by process/);
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0);
  });

  test('environment variables configure the broker (SLUICE_AMQP_PORT, SLUICE_HOST, SLUICE_DATA_DIR)', async () => {
    const dir = tempDataDir();
    dirs.push(dir);
    const child = spawn(process.execPath, [CLI, 'start'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SLUICE_AMQP_PORT: '0', SLUICE_HOST: '127.0.0.1', SLUICE_DATA_DIR: dir, SLUICE_LOG_LEVEL: 'silent' },
    });
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on 127\.0\.0\.1:(\d+), data in (.*)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (c) => reject(new Error(`exited ${c}: ${out}`)));
    });
    assert.ok(port > 0);
    const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${port}`);
    await conn.close();
    child.kill('SIGINT');
    assert.equal(await new Promise((r) => child.once('exit', r)), 0);
  });
});
