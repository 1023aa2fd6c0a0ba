// crc32cCombine must give exactly the CRC32C of the concatenation, whatever the split: a large
// record's CRC is its header's combined with its payload's (record.ts encodeRecordHeader), and
// recovery checks it against the bytes read back in one piece.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c, crc32cJs } from '../../src/common/mod.js';
import { crc32cCombine } from '../../src/storage/log/crc32c-combine.js';
import { rng } from '../contract/storage-helpers.js';

test('crc32cCombine(crc(A), crc(B), |B|) equals crc(A ‖ B) for random data and every kind of split', () => {
  const r = rng(42);
  const sizes = [0, 1, 7, 8, 9, 20, 511, 512, 513, 4096, 65_536, 65_557, 1_048_576 + 3];
  for (const total of sizes) {
    const buf = Buffer.allocUnsafe(total);
    for (let i = 0; i < total; i++) buf[i] = Math.floor(r() * 256);
    const whole = crc32cJs(buf, 0, total);
    const cuts = new Set([0, total, Math.min(20, total), Math.floor(total / 2), Math.floor(r() * (total + 1))]);
    for (const cut of cuts) {
      const a = crc32c(buf, 0, cut);
      const b = crc32c(buf, cut, total);
      assert.equal(crc32cCombine(a, b, total - cut), whole, `${total} bytes cut at ${cut}`);
    }
  }
});

test('crc32cCombine of a 20-byte header and a payload matches the known CRC32C check value', () => {
  const s = Buffer.from('123456789');
  // 0xe3069283 is CRC32C("123456789"), the standard check value.
  for (let cut = 0; cut <= s.length; cut++) {
    assert.equal(crc32cCombine(crc32c(s, 0, cut), crc32c(s, cut, s.length), s.length - cut), 0xe3069283);
  }
});
