import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../src/google/crc32c.ts';

describe('crc32c', () => {
  it.each([
    ['', 0],
    ['a', 0xc1d04330],
    ['123456789', 0xe3069283],
    ['The quick brown fox jumps over the lazy dog', 0x22620404],
  ])('crc32c(%j) = %i (RFC 3720 / published check values)', (text, expected) => {
    expect(crc32c(Buffer.from(text))).toBe(expected);
  });

  it('matches the iSCSI test vector of 32 zero bytes', () => {
    expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
  });

  it('continues from a previous value', () => {
    const data = Buffer.from('hello, secret world');
    expect(crc32c(data.subarray(7), crc32c(data.subarray(0, 7)))).toBe(crc32c(data));
  });

  it('is not the IEEE CRC-32 that zlib computes', () => {
    expect(crc32c(Buffer.from('123456789'))).not.toBe(crc32(Buffer.from('123456789')));
  });
});
