// CRC32C (Castagnoli) properties: agreement with a bit-at-a-time reference written from the
// definition (reflected polynomial 0x82F63B78, initial and final XOR 0xFFFFFFFF), and that the
// `previous` argument continues a checksum across chunks.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/google/crc32c.ts';

function reference(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

const bytes = fc.uint8Array({ maxLength: 300 });

describe('crc32c', () => {
  it('matches the published check value and the iSCSI test vectors (RFC 3720 B.4)', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it('agrees with the bitwise reference on any bytes', () => {
    fc.assert(
      fc.property(bytes, (data) => {
        expect(crc32c(data)).toBe(reference(data));
      }),
      { numRuns: 500 },
    );
  });

  it('continues across a split with `previous`: crc(a ++ b) = crc(b, crc(a))', () => {
    fc.assert(
      fc.property(bytes, bytes, (a, b) => {
        const whole = Buffer.concat([a, b]);
        expect(crc32c(b, crc32c(a))).toBe(crc32c(whole));
      }),
      { numRuns: 500 },
    );
  });

  it('gives the same result for any chunking of the input', () => {
    fc.assert(
      fc.property(fc.array(bytes, { maxLength: 8 }), (chunks) => {
        const folded = chunks.reduce((crc, chunk) => crc32c(chunk, crc), 0);
        expect(folded).toBe(reference(Buffer.concat(chunks)));
      }),
    );
  });

  it('returns `previous` unchanged for an empty chunk, and always an unsigned 32-bit value', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), bytes, (previous, data) => {
        expect(crc32c(new Uint8Array(0), previous)).toBe(previous);
        const crc = crc32c(data, previous);
        expect(Number.isInteger(crc) && crc >= 0 && crc <= 0xffffffff).toBe(true);
      }),
    );
  });
});
