// Runs the whole suite: the layer check, then every compiled *.test.js under dist/test with
// Node's test runner. `node tools/run-tests.mjs unit codec` runs only those folders.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const deps = spawnSync(process.execPath, ['dist/tools/check-deps.js', 'src'], { stdio: 'inherit' });
if (deps.status !== 0) process.exit(deps.status ?? 1);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const only = process.argv.slice(2);
const roots = only.length > 0 ? only.map((d) => join('dist/test', d)) : ['dist/test'];
const files = roots.flatMap((r) => (statSync(r).isDirectory() ? walk(r) : [r])).sort();
const r = spawnSync(process.execPath, ['--expose-gc', '--test', '--test-concurrency=2', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
