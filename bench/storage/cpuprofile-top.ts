/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`) by self time per function.
 *
 *   node dist/bench/storage/cpuprofile-top.js FILE.cpuprofile [TOP=30]
 *
 * Prints self ms, self %, and total (inclusive) % per function (name + url:line), so the
 * hot leaves and the hot callers are both visible. GC, idle and program show up as V8's
 * pseudo-functions "(garbage collector)", "(idle)", "(program)".
 */
import * as fs from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const file = process.argv[2];
if (file === undefined) {
  console.error('usage: cpuprofile-top FILE.cpuprofile [TOP]');
  process.exit(2);
}
const top = Number(process.argv[3] ?? 30);
const prof = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;

const byId = new Map<number, ProfileNode>();
const parent = new Map<number, number>();
for (const n of prof.nodes) {
  byId.set(n.id, n);
  for (const c of n.children ?? []) parent.set(c, n.id);
}
const selfUs = new Map<number, number>();
for (let i = 0; i < prof.samples.length; i++) {
  const id = prof.samples[i]!;
  selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
}
function key(n: ProfileNode): string {
  const f = n.callFrame;
  const url = f.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/');
  return `${f.functionName || '(anonymous)'}  ${url ? `${url}:${f.lineNumber + 1}` : ''}`.trim();
}
const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
for (const [id, us] of selfUs) {
  all += us;
  const n = byId.get(id)!;
  self.set(key(n), (self.get(key(n)) ?? 0) + us);
  // Inclusive time: count each distinct function once per sample stack.
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur)!);
    if (seen.has(k)) continue;
    seen.add(k);
    total.set(k, (total.get(k) ?? 0) + us);
  }
}
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
console.log(`profile ${file}: ${(all / 1000).toFixed(0)} ms sampled`);
console.log('   self ms  self %  total %  function');
for (const [k, us] of rows) {
  console.log(
    `${(us / 1000).toFixed(1).padStart(10)}  ${((100 * us) / all).toFixed(1).padStart(6)}  ${((100 * (total.get(k) ?? 0)) / all).toFixed(1).padStart(7)}  ${k}`,
  );
}
