import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate, loadSpec, OUT_RELATIVE, repoRoot, specPath } from '../../tools/codegen/amqp.js';
import { BASIC_PROPERTIES, METHOD_INFO, PROPERTY_NAMES } from '../../src/protocols/amqp091/codec/mod.js';
import { specSkip } from '../helpers/spec-available.js';

const skip = specSkip(specPath());

test('committed generated files equal a fresh generation from the spec', { skip }, () => {
  const root = repoRoot();
  const files = generate(loadSpec(specPath(root)));
  assert.ok(files.size >= 2);
  for (const [name, text] of files) {
    const committed = readFileSync(join(root, ...OUT_RELATIVE, name), 'utf8');
    assert.ok(committed === text, `${name} is stale: run npm run codegen`);
  }
});

test('generation is deterministic', { skip }, () => {
  const spec = loadSpec();
  assert.deepEqual(generate(spec), generate(structuredClone(spec)));
});

test('the hand-written property order matches the spec', () => {
  assert.deepEqual(
    BASIC_PROPERTIES.map((p) => p.name),
    [...PROPERTY_NAMES],
  );
});

test('method table covers every spec method with its content flag', { skip }, () => {
  const spec = loadSpec();
  const n = spec.classes.reduce((a, c) => a + c.methods.length, 0);
  assert.equal(METHOD_INFO.length, n);
  const content = METHOD_INFO.filter((m) => m.content).map((m) => m.name);
  assert.deepEqual(content, ['basic.publish', 'basic.return', 'basic.deliver', 'basic.get-ok']);
});
