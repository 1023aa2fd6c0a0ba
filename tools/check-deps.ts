/**
 * Keeps the layering of shared/DESIGN.md true: imports only go down the stack, other layers
 * are reached only through their mod.ts, and no file imports itself through a cycle.
 * Usage: node dist/tools/check-deps.js [srcDir]   (exit 1 and one line per violation)
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Rank of each top-level folder of src/; a file may import only from a lower rank or its own layer. */
const RANK: Record<string, number> = {
  common: 0,
  storage: 1,
  cluster: 2,
  broker: 3,
  protocols: 4,
  management: 4,
  server: 5,
  cli: 6,
  'index.ts': 7,
};

export interface Violation {
  file: string;
  message: string;
}

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listTs(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const IMPORT_RE = /(?:^|\n)\s*((?:import|export)\s[^;]*?)from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Relative imports of a file; type-only ones vanish at run time, so they cannot form a cycle. */
function importsOf(source: string): Array<{ spec: string; typeOnly: boolean }> {
  const found: Array<{ spec: string; typeOnly: boolean }> = [];
  for (const m of source.matchAll(IMPORT_RE)) {
    const spec = m[2] ?? m[3];
    if (spec !== undefined && spec.startsWith('.')) found.push({ spec, typeOnly: /^(?:import|export)\s+type\s/.test(m[1] ?? '') });
  }
  return found;
}

/** The layer a src-relative path belongs to, and for protocols the protocol name. */
function layerOf(rel: string): { layer: string; unit: string } {
  const parts = rel.split(sep);
  const layer = parts.length === 1 ? parts[0]! : parts[0]!;
  const unit = layer === 'protocols' && parts.length > 2 ? `protocols/${parts[1]}` : layer;
  return { layer, unit };
}

export function checkDeps(srcDir: string): Violation[] {
  const root = resolve(srcDir);
  const files = listTs(root);
  const violations: Violation[] = [];
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const rel = relative(root, file);
    const from = layerOf(rel);
    const edges: string[] = [];
    for (const { spec, typeOnly } of importsOf(readFileSync(file, 'utf8'))) {
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      const trel = relative(root, target);
      if (trel.startsWith('..')) {
        violations.push({ file: rel, message: `imports ${spec}, outside src/` });
        continue;
      }
      if (!typeOnly) edges.push(target);
      const to = layerOf(trel);
      if (to.unit === from.unit) continue;
      const fr = RANK[from.layer];
      const tr = RANK[to.layer];
      if (fr === undefined || tr === undefined) {
        violations.push({ file: rel, message: `unknown layer in import ${spec}` });
        continue;
      }
      if (tr >= fr) {
        violations.push({ file: rel, message: `${from.unit} imports ${to.unit} (${spec}): imports must go down the layers` });
        continue;
      }
      const modFile = to.unit === to.layer ? join(to.layer, 'mod.ts') : join(to.unit, 'mod.ts');
      if (trel !== modFile) {
        violations.push({ file: rel, message: `reaches into ${to.unit} through ${spec}; import ${modFile} instead` });
      }
    }
    graph.set(file, edges);
  }
  for (const cycle of findCycles(graph)) {
    violations.push({ file: relative(root, cycle[0]!), message: `import cycle: ${cycle.map((f) => relative(root, f)).join(' -> ')}` });
  }
  return violations;
}

function findCycles(graph: Map<string, string[]>): string[][] {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (n: string): void => {
    state.set(n, 1);
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      const s = state.get(m);
      if (s === 1) cycles.push([...stack.slice(stack.indexOf(m)), m]);
      else if (s === undefined && graph.has(m)) visit(m);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const n of graph.keys()) if (!state.has(n)) visit(n);
  return cycles;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const here = dirname(fileURLToPath(import.meta.url));
  const src = process.argv[2] ?? join(here, '..', '..', 'src');
  const v = checkDeps(src);
  for (const x of v) console.error(`check-deps: ${x.file}: ${x.message}`);
  if (v.length > 0) process.exit(1);
  console.log(`check-deps: ok (${src})`);
}
