import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { checkDeps } from '../../tools/check-deps.js';

function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-deps-'));
  for (const [p, body] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), body);
  }
  return dir;
}

test('the real source tree has no layer violations', () => {
  assert.deepEqual(checkDeps('src'), []);
});

test('an upward import is reported', () => {
  const dir = tree({
    'storage/mod.ts': "import { x } from '../broker/mod.js';\n",
    'broker/mod.ts': 'export const x = 1;\n',
  });
  const v = checkDeps(dir);
  rmSync(dir, { recursive: true });
  assert.equal(v.length, 1);
  assert.match(v[0]!.message, /imports must go down/);
});

test('a deep cross-layer import is reported', () => {
  const dir = tree({
    'broker/queue.ts': "import { y } from '../storage/log/segment.js';\n",
    'storage/log/segment.ts': 'export const y = 1;\n',
  });
  const v = checkDeps(dir);
  rmSync(dir, { recursive: true });
  assert.equal(v.length, 1);
  assert.match(v[0]!.message, /import storage\/mod.ts instead/);
});

test('a cycle is reported', () => {
  const dir = tree({
    'broker/a.ts': "import { b } from './b.js';\nexport const a = 1;\n",
    'broker/b.ts': "import { a } from './a.js';\nexport const b = 1;\n",
  });
  const v = checkDeps(dir);
  rmSync(dir, { recursive: true });
  assert.ok(v.some((x) => /import cycle/.test(x.message)));
});
