/**
 * Generates the AMQP 0-9-1 method tables from RabbitMQ's machine-readable spec
 * (../shared/specs/amqp-0-9-1/amqp-rabbitmq-0.9.1.json, the same file amqplib's
 * bin/generate-defs.js and rabbitmq_codegen read) into src/protocols/amqp091/codec/generated/.
 *
 * Usage: node dist/tools/codegen/amqp.js [--check]
 *   (no flag) writes the generated files; --check exits 1 if a committed file differs.
 *
 * The output is a pure function of the JSON: no dates, no paths, sorted nothing that the spec
 * orders, so test/codec/codegen.test.ts can regenerate in memory and compare byte for byte.
 */
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SPEC_RELATIVE = ['..', 'shared', 'specs', 'amqp-0-9-1', 'amqp-rabbitmq-0.9.1.json'] as const;
export const OUT_RELATIVE = ['src', 'protocols', 'amqp091', 'codec', 'generated'] as const;

/** The base wire types of method arguments in 0-9-1 (domains resolve to one of these). */
export type ArgType = 'bit' | 'octet' | 'short' | 'long' | 'longlong' | 'shortstr' | 'longstr' | 'table' | 'timestamp';

interface SpecArg {
  name: string;
  type?: string;
  domain?: string;
  'default-value'?: unknown;
}
interface SpecMethod {
  id: number;
  name: string;
  arguments: SpecArg[];
  synchronous?: boolean;
  content?: boolean;
}
interface SpecClass {
  id: number;
  name: string;
  methods: SpecMethod[];
  properties?: SpecArg[] | null;
}
export interface Spec {
  name: string;
  'major-version': number;
  'minor-version': number;
  revision: number;
  port: number;
  domains: [string, string][];
  constants: { name: string; value: number; class?: string }[];
  classes: SpecClass[];
}

/** Walks up from this file until it finds the repo's package.json (works from src and dist). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'tsconfig.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('codegen: cannot find the repository root');
    dir = up;
  }
}

export function specPath(root = repoRoot()): string {
  return join(root, ...SPEC_RELATIVE);
}

export function loadSpec(path = specPath()): Spec {
  return JSON.parse(readFileSync(path, 'utf8')) as Spec;
}

const pascal = (s: string): string => s.split(/[-.]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
const camel = (s: string): string => {
  const p = pascal(s);
  return p.charAt(0).toLowerCase() + p.slice(1);
};
const upper = (s: string): string => s.replace(/-/g, '_').toUpperCase();
const hex8 = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

interface Arg {
  wire: string;
  field: string;
  type: ArgType;
  default: unknown;
  hasDefault: boolean;
}
interface Method {
  cls: SpecClass;
  spec: SpecMethod;
  name: string;
  type: string;
  constName: string;
  key: number;
  args: Arg[];
}

function resolveArgs(spec: Spec, m: SpecMethod): Arg[] {
  const domains = new Map(spec.domains);
  return m.arguments.map((a) => {
    let t = a.type ?? a.domain;
    // Domains can name other domains (e.g. "short"), so follow until a base type is reached.
    for (let i = 0; t !== undefined && domains.has(t) && domains.get(t) !== t && i < 8; i++) t = domains.get(t);
    if (t === undefined) throw new Error(`codegen: argument ${a.name} has no type`);
    const known: ArgType[] = ['bit', 'octet', 'short', 'long', 'longlong', 'shortstr', 'longstr', 'table', 'timestamp'];
    if (!known.includes(t as ArgType)) throw new Error(`codegen: unknown type ${t} for ${m.name}.${a.name}`);
    return {
      wire: a.name,
      field: camel(a.name),
      type: t as ArgType,
      default: a['default-value'],
      hasDefault: Object.hasOwn(a, 'default-value'),
    };
  });
}

function methodsOf(spec: Spec): Method[] {
  const out: Method[] = [];
  for (const cls of spec.classes) {
    for (const m of cls.methods) {
      out.push({
        cls,
        spec: m,
        name: `${cls.name}.${m.name}`,
        type: pascal(cls.name) + pascal(m.name),
        constName: `${upper(cls.name)}_${upper(m.name)}`,
        key: cls.id * 65536 + m.id,
        args: resolveArgs(spec, m),
      });
    }
  }
  return out;
}

const TS_TYPE: Record<ArgType, string> = {
  bit: 'boolean',
  octet: 'number',
  short: 'number',
  long: 'number',
  longlong: 'number',
  timestamp: 'number',
  shortstr: 'string',
  longstr: 'Buffer',
  table: 'FieldTable',
};
const TS_INPUT_TYPE: Record<ArgType, string> = { ...TS_TYPE, longstr: 'Buffer | string' };

function defaultLiteral(a: Arg): string {
  const v = a.default;
  if (a.type === 'table') return 'EMPTY_TABLE';
  if (typeof v === 'string') return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  return JSON.stringify(v);
}

/** Local variable for a field: `arguments` cannot name a binding in strict mode. */
const local = (a: Arg): string => (a.field === 'arguments' || a.field === 'eval' ? `${a.field}_` : a.field);

/** Emits a straight-line decoder: one bounds check per field, bits unpacked from shared octets. */
function genDecoder(m: Method): string[] {
  const L: string[] = [];
  const c = m.cls.id;
  const id = m.spec.id;
  const err = `malformed(${c}, ${id})`;
  L.push(`export function decode${m.type}(buf: Buffer, off: number, end: number): ${m.type} {`);
  const needsLen = m.args.some((a) => a.type === 'shortstr' || a.type === 'longstr' || a.type === 'table');
  if (needsLen) L.push('  let len = 0;');
  let bitIndex = 0;
  let bitsVar = 0;
  for (const a of m.args) {
    if (a.type !== 'bit') bitIndex = 0;
    switch (a.type) {
      case 'bit':
        if (bitIndex === 0) {
          bitsVar++;
          L.push(`  if (off + 1 > end) throw ${err};`);
          L.push(`  const bits${bitsVar} = buf[off];`);
          L.push('  off += 1;');
        }
        L.push(`  const ${local(a)} = (bits${bitsVar} & ${1 << bitIndex}) !== 0;`);
        bitIndex = (bitIndex + 1) % 8;
        break;
      case 'octet':
        L.push(`  if (off + 1 > end) throw ${err};`);
        L.push(`  const ${local(a)} = buf[off];`);
        L.push('  off += 1;');
        break;
      case 'short':
        L.push(`  if (off + 2 > end) throw ${err};`);
        L.push(`  const ${local(a)} = (buf[off] << 8) | buf[off + 1];`);
        L.push('  off += 2;');
        break;
      case 'long':
        L.push(`  if (off + 4 > end) throw ${err};`);
        L.push(`  const ${local(a)} = buf.readUInt32BE(off);`);
        L.push('  off += 4;');
        break;
      case 'longlong':
      case 'timestamp':
        L.push(`  if (off + 8 > end) throw ${err};`);
        L.push(`  const ${local(a)} = readU64(buf, off);`);
        L.push('  off += 8;');
        break;
      case 'shortstr':
        L.push(`  if (off + 1 > end) throw ${err};`);
        L.push('  len = buf[off];');
        L.push('  off += 1;');
        L.push(`  if (off + len > end) throw ${err};`);
        L.push(`  const ${local(a)} = readStr(buf, off, len);`);
        L.push('  off += len;');
        break;
      case 'longstr':
        L.push(`  if (off + 4 > end) throw ${err};`);
        L.push('  len = buf.readUInt32BE(off);');
        L.push('  off += 4;');
        L.push(`  if (off + len > end) throw ${err};`);
        L.push(`  const ${local(a)} = Buffer.from(buf.subarray(off, off + len));`);
        L.push('  off += len;');
        break;
      case 'table':
        L.push(`  if (off + 4 > end) throw ${err};`);
        L.push('  len = buf.readUInt32BE(off);');
        L.push('  off += 4;');
        L.push(`  if (off + len > end) throw ${err};`);
        L.push(`  const ${local(a)} = decodeTableIn(buf, off, off + len, ${c}, ${id});`);
        L.push('  off += len;');
        break;
    }
  }
  // rabbit_framing matches the whole binary, so trailing bytes are as malformed as missing ones.
  L.push(`  if (off !== end) throw ${err};`);
  L.push(`  return { ${m.args.map((a) => (local(a) === a.field ? a.field : `${a.field}: ${local(a)}`)).join(', ')} };`.replace('{  }', '{}'));
  L.push('}');
  return L;
}

/** Emits an encoder of class-id, method-id and the arguments; Node's write* calls bound-check. */
function genEncoder(m: Method): string[] {
  const L: string[] = [];
  const argsUsed = m.args.length > 0;
  L.push(`export function encode${m.type}(buf: Buffer, off: number, ${argsUsed ? '' : '_'}args: ${m.type}Args): number {`);
  L.push(`  off = buf.writeUInt32BE(${hex8(m.key)}, off);`);
  const val = (a: Arg): string => (a.hasDefault && a.default !== null ? `(args.${a.field} ?? ${defaultLiteral(a)})` : `args.${a.field}`);
  let i = 0;
  while (i < m.args.length) {
    const a = m.args[i]!;
    if (a.type === 'bit') {
      const group: string[] = [];
      while (i < m.args.length && m.args[i]!.type === 'bit' && group.length < 8) {
        const b = m.args[i]!;
        group.push(`(${val(b)} ? ${1 << group.length} : 0)`);
        i++;
      }
      L.push(`  off = buf.writeUInt8(${group.join(' | ')}, off);`);
      continue;
    }
    switch (a.type) {
      case 'octet':
        L.push(`  off = buf.writeUInt8(${val(a)}, off);`);
        break;
      case 'short':
        L.push(`  off = buf.writeUInt16BE(${val(a)}, off);`);
        break;
      case 'long':
        L.push(`  off = buf.writeUInt32BE(${val(a)}, off);`);
        break;
      case 'longlong':
      case 'timestamp':
        L.push(`  off = writeU64(buf, off, ${val(a)});`);
        break;
      case 'shortstr':
        L.push(`  off = writeShortStr(buf, off, ${val(a)});`);
        break;
      case 'longstr':
        L.push(`  off = writeLongStr(buf, off, ${val(a)});`);
        break;
      case 'table':
        L.push(`  off = encodeTable(buf, off, ${val(a)});`);
        break;
    }
    i++;
  }
  L.push('  return off;');
  L.push('}');
  return L;
}

function genMethods(spec: Spec): string {
  const methods = methodsOf(spec);
  const L: string[] = [];
  L.push('// GENERATED by tools/codegen/amqp.ts from ../shared/specs/amqp-0-9-1/amqp-rabbitmq-0.9.1.json.');
  L.push('// Do not edit: run `npm run codegen`. test/codec/codegen.test.ts fails when this file is stale.');
  L.push('/*');
  L.push(' * Method frame payload (AMQP 0-9-1 §4.2.4):');
  L.push(' *   class-id:u16 method-id:u16 arguments…');
  L.push(' * Arguments in spec order: octet u8, short u16, long u32, longlong/timestamp u64,');
  L.push(' *   shortstr = len:u8 bytes, longstr = len:u32 bytes, table = len:u32 field-value-pairs,');
  L.push(' *   consecutive bits packed into one octet, least significant bit first (§4.2.5.2).');
  L.push(' * decodeXxx(buf, off, end) reads the arguments only: `off` is just past the two ids.');
  L.push(' * encodeXxx(buf, off, args) writes ids and arguments and returns the offset after them.');
  L.push(' */');
  L.push("import { malformed, notImplemented } from '../amqp-codec-error.js';");
  L.push("import { encodeTable, type FieldTable } from '../field-table.js';");
  L.push(
    "import { EMPTY_TABLE, decodeTableIn, readStr, readU64, writeLongStr, writeShortStr, writeU64 } from '../primitives.js';",
  );
  L.push('');
  L.push('export const ClassId = {');
  for (const c of spec.classes) L.push(`  ${pascal(c.name)}: ${c.id},`);
  L.push('} as const;');
  L.push('');
  L.push('/** Base wire type of each argument, for tools and property tests that walk METHOD_INFO. */');
  L.push("export type ArgType = 'bit' | 'octet' | 'short' | 'long' | 'longlong' | 'shortstr' | 'longstr' | 'table' | 'timestamp';");
  L.push('');
  L.push('export interface MethodInfo {');
  L.push('  readonly name: string;');
  L.push('  readonly classId: number;');
  L.push('  readonly methodId: number;');
  L.push('  /** classId * 65536 + methodId, the value decodeMethod switches on. */');
  L.push('  readonly key: number;');
  L.push('  /** The method is followed by a content header and body frames (spec `content: true`). */');
  L.push('  readonly content: boolean;');
  L.push('  readonly synchronous: boolean;');
  L.push('  readonly args: readonly { readonly name: string; readonly type: ArgType }[];');
  L.push('}');
  for (const m of methods) {
    L.push('');
    const flags = [m.spec.content === true ? 'carries content' : '', m.spec.synchronous === true ? 'synchronous' : '']
      .filter((s) => s !== '')
      .join(', ');
    L.push(`/** ${m.name} (${m.cls.id}/${m.spec.id})${flags !== '' ? `: ${flags}` : ''}. */`);
    L.push(
      `export const ${m.constName} = { name: '${m.name}', classId: ${m.cls.id}, methodId: ${m.spec.id}, key: ${hex8(m.key)} } as const;`,
    );
    L.push('');
    if (m.args.length === 0) {
      L.push(`export interface ${m.type} {}`);
    } else {
      L.push(`export interface ${m.type} {`);
      for (const a of m.args) L.push(`  ${a.field}: ${TS_TYPE[a.type]};`);
      L.push('}');
    }
    L.push('');
    L.push(`/** What encode${m.type} accepts: arguments with a spec default may be left out. */`);
    if (m.args.length === 0) {
      L.push(`export type ${m.type}Args = ${m.type};`);
    } else {
      L.push(`export interface ${m.type}Args {`);
      for (const a of m.args) {
        const opt = a.hasDefault && a.default !== null ? '?' : '';
        L.push(`  ${a.field}${opt}: ${TS_INPUT_TYPE[a.type]};`);
      }
      L.push('}');
    }
    L.push('');
    L.push(...genDecoder(m));
    L.push('');
    L.push(...genEncoder(m));
  }

  L.push('');
  L.push('/** Every method as decoded, discriminated by `name`. */');
  L.push('export type AmqpMethod =');
  for (const m of methods) {
    L.push(`  | { name: '${m.name}'; classId: ${m.cls.id}; methodId: ${m.spec.id}; args: ${m.type} }`);
  }
  L.push(';');
  L.push('');
  L.push('/** What encodeMethod accepts. */');
  L.push('export type AmqpMethodArgs =');
  for (const m of methods) L.push(`  | { name: '${m.name}'; args: ${m.type}Args }`);
  L.push(';');
  L.push('');
  L.push('export type AmqpMethodName = AmqpMethod[\'name\'];');
  L.push('');
  L.push('/**');
  L.push(' * Decodes the arguments of any method. Allocates one result object; the hot methods have');
  L.push(' * allocation-free decoders in fast-decoders.ts. Unknown ids throw 540 NOT_IMPLEMENTED.');
  L.push(' */');
  L.push('export function decodeMethod(classId: number, methodId: number, buf: Buffer, off: number, end: number): AmqpMethod {');
  L.push('  switch (classId * 65536 + methodId) {');
  for (const m of methods) {
    L.push(`    case ${hex8(m.key)}:`);
    L.push(`      return { name: '${m.name}', classId: ${m.cls.id}, methodId: ${m.spec.id}, args: decode${m.type}(buf, off, end) };`);
  }
  L.push('    default:');
  L.push('      throw notImplemented(classId, methodId);');
  L.push('  }');
  L.push('}');
  L.push('');
  L.push('/** Encodes any method payload (ids and arguments) at `off` and returns the offset after it. */');
  L.push('export function encodeMethod(buf: Buffer, off: number, m: AmqpMethodArgs): number {');
  L.push('  switch (m.name) {');
  for (const m of methods) {
    L.push(`    case '${m.name}':`);
    L.push(`      return encode${m.type}(buf, off, m.args);`);
  }
  L.push('  }');
  L.push('}');
  L.push('');
  L.push('export const METHOD_INFO: readonly MethodInfo[] = [');
  for (const m of methods) {
    const args = m.args.map((a) => `{ name: '${a.field}', type: '${a.type}' }`).join(', ');
    L.push(
      `  { name: '${m.name}', classId: ${m.cls.id}, methodId: ${m.spec.id}, key: ${hex8(m.key)}, content: ${m.spec.content === true}, synchronous: ${m.spec.synchronous === true}, args: [${args}] },`,
    );
  }
  L.push('];');
  L.push('');
  L.push('const BY_KEY = new Map<number, MethodInfo>(METHOD_INFO.map((m) => [m.key, m]));');
  L.push('');
  L.push('export function methodInfo(classId: number, methodId: number): MethodInfo | undefined {');
  L.push('  return BY_KEY.get(classId * 65536 + methodId);');
  L.push('}');
  L.push('');
  L.push('/** "basic.publish" for 60/40, or undefined for ids the spec does not define. */');
  L.push('export function methodName(classId: number, methodId: number): string | undefined {');
  L.push('  return BY_KEY.get(classId * 65536 + methodId)?.name;');
  L.push('}');
  L.push('');
  L.push('/** True for the methods followed by a content header and body (publish, return, deliver, get-ok). */');
  L.push('export function methodHasContent(classId: number, methodId: number): boolean {');
  L.push('  switch (classId * 65536 + methodId) {');
  for (const m of methods.filter((x) => x.spec.content === true)) L.push(`    case ${hex8(m.key)}:`);
  L.push('      return true;');
  L.push('    default:');
  L.push('      return false;');
  L.push('  }');
  L.push('}');
  L.push('');
  return L.join('\n');
}

function genConstants(spec: Spec): string {
  const L: string[] = [];
  L.push('// GENERATED by tools/codegen/amqp.ts from ../shared/specs/amqp-0-9-1/amqp-rabbitmq-0.9.1.json.');
  L.push('// Do not edit: run `npm run codegen`. test/codec/codegen.test.ts fails when this file is stale.');
  L.push('');
  L.push(
    `export const PROTOCOL_VERSION = { major: ${spec['major-version']}, minor: ${spec['minor-version']}, revision: ${spec.revision} } as const;`,
  );
  L.push(`export const AMQP_PORT = ${spec.port};`);
  L.push('');
  const isFrameConst = (c: { name: string; class?: string }): boolean => c.name.startsWith('FRAME-') && c.class === undefined;
  const frames = spec.constants.filter(isFrameConst);
  for (const c of frames) L.push(`export const ${upper(c.name)} = ${c.value};`);
  L.push('');
  L.push('/** Reply codes for connection.close and channel.close (spec "constants"). */');
  L.push('export const ReplyCode = {');
  for (const c of spec.constants.filter((x) => !isFrameConst(x))) L.push(`  ${upper(c.name)}: ${c.value},`);
  L.push('} as const;');
  L.push('');
  L.push('export type ReplyCodeValue = (typeof ReplyCode)[keyof typeof ReplyCode];');
  L.push('');
  L.push('/** Hard errors close the connection; soft errors close only the channel. */');
  L.push('export function isHardError(code: number): boolean {');
  L.push('  switch (code) {');
  for (const c of spec.constants.filter((x) => x.class === 'hard-error')) L.push(`    case ${c.value}:`);
  L.push('      return true;');
  L.push('    default:');
  L.push('      return false;');
  L.push('  }');
  L.push('}');
  L.push('');
  const basic = spec.classes.find((c) => c.name === 'basic');
  const props = basic?.properties ?? [];
  L.push('/** Content-header properties of class basic, in flag order (bit 15 first). */');
  L.push('export const BASIC_PROPERTIES = [');
  for (const p of props) L.push(`  { name: '${camel(p.name)}', type: '${p.type ?? p.domain ?? ''}' },`);
  L.push('] as const;');
  L.push('');
  return L.join('\n');
}

/** File name (inside OUT_RELATIVE) → contents. Pure: the same spec always gives the same bytes. */
export function generate(spec: Spec): Map<string, string> {
  return new Map([
    ['constants.generated.ts', genConstants(spec)],
    ['methods.generated.ts', genMethods(spec)],
  ]);
}

function main(): void {
  const root = repoRoot();
  const outDir = join(root, ...OUT_RELATIVE);
  const files = generate(loadSpec(specPath(root)));
  const check = process.argv.includes('--check');
  let stale = 0;
  mkdirSync(outDir, { recursive: true });
  for (const [name, text] of files) {
    const path = join(outDir, name);
    const old = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
    if (old === text) continue;
    if (check) {
      console.error(`codegen: ${path} is out of date; run npm run codegen`);
      stale++;
    } else {
      writeFileSync(path, text);
      console.log(`codegen: wrote ${path}`);
    }
  }
  if (stale > 0) process.exit(1);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
