/**
 * Python pika (Debian's /usr/bin/python3) against the broker: each script in py/ connects to the
 * port given as its argument, asserts, and exits 0 printing OK.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { removeDir, startTestBroker } from '../helpers/test-broker.js';

const PYTHON = '/usr/bin/python3';
// dist/test/integration → the sources in test/integration/py
const PY_DIR = fileURLToPath(new URL('../../../test/integration/py/', import.meta.url));

function runPy(script: string, port: number, timeoutMs = 30000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(PYTHON, [join(PY_DIR, script), String(port)], { cwd: PY_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out, err });
    });
  });
}

const havePika = existsSync(PYTHON);

describe('pika (Python) against the broker', { skip: havePika ? false : `${PYTHON} not found` }, () => {
  let broker: Awaited<ReturnType<typeof startTestBroker>>;
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await broker.close();
    removeDir(broker.dataDir);
  });

  for (const script of ['hello_world.py', 'work_queue.py', 'confirms.py', 'tx.py']) {
    test(script, async () => {
      const r = await runPy(script, broker.amqpPort);
      assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.out}\nstderr: ${r.err}`);
      assert.match(r.out, /^OK/m);
    });
  }
});
